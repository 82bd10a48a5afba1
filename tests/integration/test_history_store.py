"""The history store itself, on both backends: SQLite in a temp dir and a real PostgreSQL."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from stockctl.errors import UsageError
from stockctl.history import HistoryError, HistoryStore, TickRow, open_store, parse_cursor
from stockctl.history.postgres import PostgresStore
from stockctl.history.sqlite import SqliteStore
from stockctl.marketdata.money import to_units
from stockctl.settings import Settings, parse_duration
from tests.support.pg import pg_server, pg_url  # noqa: F401  (fixtures)

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a whole hour: 1700000000 % 3600 == 800, so use T0 - 800 s as an hour start
HOUR = T0 - 800 * S


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    if request.param == "sqlite":
        s: HistoryStore = SqliteStore(tmp_path / "h.sqlite3")
    else:
        s = PostgresStore(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def tick(seq: int, ts: int, price: str, volume: int = 1, symbol: str = "AAPL") -> TickRow:
    return TickRow(symbol, seq, ts, to_units(price), volume)


def test_a_tick_is_stored_once_however_often_it_comes(store: HistoryStore) -> None:
    rows = [tick(i, HOUR + i * S, f"{100 + i}.25") for i in range(1, 6)]
    assert store.write(rows) == 5
    assert store.write(rows) == 0  # a redelivered batch
    assert store.write([rows[2], tick(6, HOUR + 6 * S, "106.25"), rows[2]]) == 1
    got = store.ticks("AAPL", limit=100)
    assert [p.seq for p in got] == [1, 2, 3, 4, 5, 6]
    assert [p.point().price for p in got][:2] == ["101.25", "102.25"]
    assert store.count() == 6 and store.symbols() == ["AAPL"]
    one_s = store.candles("AAPL", "1s", limit=100)
    assert [c.count for c in one_s] == [1] * 6  # duplicates were not folded in twice


def test_candles_fold_every_stored_tick_even_late_ones(store: HistoryStore) -> None:
    # Two batches of one minute; the second holds a tick that belongs before the first's open.
    store.write([tick(2, HOUR + 10 * S, "10.00", 3), tick(3, HOUR + 20 * S, "12.50", 2)])
    store.write([tick(4, HOUR + 30 * S, "9.00", 1), tick(1, HOUR + 5 * S, "11.00", 4)])
    [m] = store.candles("AAPL", "1m")
    assert (m.open, m.high, m.low, m.close, m.volume, m.count) == ("11.00", "12.50", "9.00", "9.00", 10, 4)
    [h] = store.candles("AAPL", "1h")
    assert h.start == HOUR and (h.open, h.close, h.count) == ("11.00", "9.00", 4)
    assert len(store.candles("AAPL", "1s")) == 4
    with pytest.raises(UsageError, match="stored intervals: 1s, 1m, 1h"):
        store.candles("AAPL", "5m")


def test_candles_equal_a_recomputation_from_the_ticks(store: HistoryStore) -> None:
    rng = random.Random(7)
    rows = [
        tick(i, HOUR + rng.randrange(0, 7200) * S, f"{rng.randrange(100, 200)}.{rng.randrange(100):02d}")
        for i in range(1, 801)
    ]
    shuffled = rows[:]
    rng.shuffle(shuffled)
    for i in range(0, len(shuffled), 97):  # odd batches, out of order, some sent twice
        store.write(shuffled[i : i + 97] + shuffled[i : i + 5])
    for name, iv in (("1s", S), ("1m", 60 * S), ("1h", 3600 * S)):
        expect: dict[int, list[TickRow]] = {}
        for r in sorted(rows, key=lambda r: (r.ts, r.seq)):
            expect.setdefault(r.ts - r.ts % iv, []).append(r)
        got = store.candles("AAPL", name, limit=10_000)
        assert [c.start for c in got] == sorted(expect)
        for c in got:
            rs = expect[c.start]
            assert c.open == rs[0].point().price and c.close == rs[-1].point().price
            assert to_units(c.high) == max(r.price for r in rs) and to_units(c.low) == min(r.price for r in rs)
            assert (c.count, c.volume) == (len(rs), sum(r.volume for r in rs))


def test_a_feeds_exact_quantities_are_stored_and_summed_into_candles(store: HistoryStore) -> None:
    qtys = ["0.0012", "0.5", "0.49880001", "1", "0.00000001"]  # 1e-8 units: a satoshi is exact
    rows = [
        TickRow("BTC/USDT", i, HOUR + i * S // 10, to_units("67000"), 0, to_units(q)) for i, q in enumerate(qtys, 1)
    ]
    assert store.write(rows) == 5
    assert store.write(rows[:2]) == 0  # a redelivery adds nothing to the sums
    assert [r.qty for r in store.ticks("BTC/USDT")] == [to_units(q) for q in qtys]
    [m] = store.candles("BTC/USDT", "1m")
    assert (m.qty, m.volume, m.count) == ("2.00000002", 2, 5)  # the processor's shape: volume, the whole units
    store.write([TickRow("BTC/USDT", 6, HOUR + 30 * S, to_units("67000"), 0, to_units("0.99999998"))])
    [m] = store.candles("BTC/USDT", "1m")
    assert (m.qty, m.volume) == ("3", 3)
    store.write([tick(1, HOUR, "10.00", 7)])  # a simulated tick: whole units, no qty
    [c] = store.candles("AAPL", "1m")
    assert (c.volume, c.qty) == (7, None) and store.ticks("AAPL")[0].qty == 0


def test_ranges_and_pages_by_cursor(store: HistoryStore) -> None:
    store.write([tick(i, HOUR + i * S, "50.00") for i in range(1, 101)])
    store.write([tick(i, HOUR + i * S, "70.00", symbol="MSFT") for i in range(1, 11)])
    page = store.ticks("AAPL", start=HOUR + 10 * S, end=HOUR + 60 * S, limit=20)
    assert [p.seq for p in page] == list(range(10, 30))
    seen = [p.seq for p in page]
    while len(page) == 20:
        page = store.ticks("AAPL", start=HOUR + 10 * S, end=HOUR + 60 * S, after=(page[-1].ts, page[-1].seq), limit=20)
        seen += [p.seq for p in page]
    assert seen == list(range(10, 60))
    assert [p.seq for p in store.ticks("AAPL", limit=3, latest=True)] == [98, 99, 100]
    assert [p.seq for p in store.ticks("MSFT", limit=100)] == list(range(1, 11))
    mins = store.candles("AAPL", "1m", start=HOUR + 60 * S)
    assert [c.start for c in mins] == [HOUR + 60 * S]
    assert store.candles("AAPL", "1s", after=HOUR + 98 * S) == store.candles("AAPL", "1s", limit=2, latest=True)


def test_prune_deletes_only_what_is_older_than_the_cutoff(store: HistoryStore) -> None:
    store.write([tick(i, HOUR + i * 60 * S, "20.00") for i in range(1, 121)])  # two hours, a tick a minute
    cutoff = HOUR + 60 * 60 * S
    assert store.prune(cutoff) == 59
    assert store.ticks("AAPL", limit=1)[0].seq == 60
    assert store.count() == 61
    assert min(c.start for c in store.candles("AAPL", "1m", limit=1000)) >= cutoff
    assert [c.start for c in store.candles("AAPL", "1h")] == [HOUR + 3600 * S, HOUR + 7200 * S]  # tick 120 opens hour 3
    assert store.prune(cutoff) == 0


def test_a_read_only_store_cannot_write(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    writer = SqliteStore(tmp_path / "h.sqlite3")
    writer.write([tick(1, HOUR, "1.00")])
    reader = SqliteStore(tmp_path / "h.sqlite3", read_only=True)
    assert [p.seq for p in reader.ticks("AAPL")] == [1]
    with pytest.raises(HistoryError, match="open read-only"):
        reader.write([tick(2, HOUR + S, "1.00")])
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # the connection itself cannot write
        reader.db.execute("DELETE FROM ticks")
    pg_writer = PostgresStore(pg_url)
    pg_reader = PostgresStore(pg_url, read_only=True)
    with pytest.raises(HistoryError, match="open read-only"):
        pg_reader.write([tick(2, HOUR + S, "1.00")])
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pg_reader.db.execute("DELETE FROM ticks")
    for s in (writer, reader, pg_writer, pg_reader):
        s.close()
    with pytest.raises(HistoryError, match="no history store at"):
        SqliteStore(tmp_path / "missing.sqlite3", read_only=True)


def test_open_store_picks_the_backend_and_says_what_is_wrong(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    s = open_store(Settings(home=tmp_path))
    assert isinstance(s, SqliteStore) and s.path == tmp_path / "data" / "history.sqlite3"
    assert (s.path.stat().st_mode & 0o777) == 0o600
    s.close()
    p = open_store(Settings(home=tmp_path, history_url=pg_url))
    assert isinstance(p, PostgresStore)
    p.close()
    with pytest.raises(HistoryError, match=r"cannot connect to the history database .*STOCKCTL_HISTORY_URL"):
        open_store(Settings(home=tmp_path, history_url="postgresql://u:secret@127.0.0.1:1/x"))
    try:
        open_store(Settings(home=tmp_path, history_url="postgresql://u:secret@127.0.0.1:1/x"))
    except HistoryError as exc:
        assert "secret" not in str(exc)


def test_durations_and_cursors_parse_or_say_how() -> None:
    assert parse_duration("30d") == 30 * 86_400 * S and parse_duration("0") == 0 and parse_duration("90s") == 90 * S
    for bad in ("", "30", "1y", "-1d", "0d", "1.5h"):
        with pytest.raises(ValueError, match="use a number and s, m, h, d or w"):
            parse_duration(bad)
    assert parse_cursor("123:4") == (123, 4)
    for bad in ("123", "a:b", "1:-2", ":3"):
        with pytest.raises(UsageError, match="TS:SEQ"):
            parse_cursor(bad)
    with pytest.raises(ValueError, match="bad duration"):
        Settings(history_retention="forever")


OLD_TICKS = """CREATE TABLE ticks (symbol TEXT NOT NULL, seq {int} NOT NULL, ts {int} NOT NULL, price {int} NOT NULL,
    volume {int} NOT NULL, PRIMARY KEY (symbol, seq)){rowid}"""
OLD_CANDLES = """CREATE TABLE candles (symbol TEXT NOT NULL, iv INTEGER NOT NULL, start {int} NOT NULL,
    open {int} NOT NULL, high {int} NOT NULL, low {int} NOT NULL, close {int} NOT NULL, volume {int} NOT NULL,
    count {int} NOT NULL, open_ts {int} NOT NULL, open_seq {int} NOT NULL, close_ts {int} NOT NULL,
    close_seq {int} NOT NULL, PRIMARY KEY (symbol, iv, start)){rowid}"""
"""The tables as the store made them before exact quantities (no ``qty`` columns)."""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_from_before_qty_is_upgraded_in_place(backend: str, tmp_path: Path, request) -> None:
    if backend == "sqlite":
        path = tmp_path / "h.sqlite3"
        db = sqlite3.connect(path)
        kinds = {"int": "INTEGER", "rowid": " WITHOUT ROWID"}
        ph = "?"
    else:
        url = request.getfixturevalue("pg_url")
        db = psycopg.connect(url, autocommit=True)
        kinds = {"int": "BIGINT", "rowid": ""}
        ph = "%s"
    for ddl in (OLD_TICKS, OLD_CANDLES, "CREATE TABLE symbols (symbol TEXT PRIMARY KEY)"):
        db.execute(ddl.format(**kinds))
    db.execute(f"INSERT INTO ticks VALUES ('AAPL', 1, {ph}, 1000000000, 5)", (HOUR,))
    db.execute(
        f"INSERT INTO candles VALUES ('AAPL', 60, {ph}, 1000000000, 1000000000, 1000000000, 1000000000, 5, 1,"
        f" {ph}, 1, {ph}, 1)",
        (HOUR, HOUR, HOUR),
    )
    db.execute("INSERT INTO symbols VALUES ('AAPL')")
    db.commit()
    db.close()

    def opened(read_only: bool = False) -> HistoryStore:
        return SqliteStore(path, read_only) if backend == "sqlite" else PostgresStore(url, read_only)

    with pytest.raises(HistoryError, match="predates exact quantities; the history daemon upgrades it"):
        opened(read_only=True)  # the gateway and export wait for the writer, rather than fail on a column
    store = opened()  # the writer: ALTER TABLE ... ADD COLUMN
    assert store.write([tick(2, HOUR + S, "11.00", 2), TickRow("AAPL", 3, HOUR + 2 * S, to_units("12"), 0, 25)]) == 2
    assert [(r.seq, r.volume, r.qty) for r in store.ticks("AAPL")] == [(1, 5, 0), (2, 2, 0), (3, 0, 25)]
    [m] = store.candles("AAPL", "1m")
    assert (m.open, m.close, m.volume, m.count, m.qty) == ("10.00", "12.00", 7, 3, "0.00000025")
    store.close()
    again = opened()  # a second open finds nothing to add
    assert again.count() == 3
    again.close()
    reader = opened(read_only=True)
    assert [r.qty for r in reader.ticks("AAPL")] == [0, 0, 25]
    reader.close()
