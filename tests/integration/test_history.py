"""The history writer daemon against real NATS, on SQLite and on a real PostgreSQL:
kill -9 mid-stream loses and duplicates nothing; retention prunes, period after period."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import nats
import pytest

from stockctl.history import HistoryStore, open_store
from stockctl.settings import Settings
from stockctl.wire import names
from tests.support.pg import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.support.stack import Daemon, make_settings, wait_for
from tests.support.streams import stream_ticks

pytestmark = pytest.mark.integration

S = 1_000_000_000


def stored(store: HistoryStore) -> list[tuple[str, int, int, int, int]]:
    out = []
    for sym in store.symbols():
        after = None
        while True:
            page = store.ticks(sym, after=after, limit=10_000)
            out += [(r.symbol, r.seq, r.ts, r.price, r.volume) for r in page]
            if len(page) < 10_000:
                break
            after = (page[-1].ts, page[-1].seq)
    return out


def backend_settings(backend: str, request: pytest.FixtureRequest, clean, home: Path, **overrides: object) -> Settings:
    if backend == "postgres":
        overrides["history_url"] = request.getfixturevalue("pg_url")
    return make_settings(clean, home, **overrides)


def status_of(d: Daemon) -> dict:
    try:
        return json.loads(d.status_path.read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(
    backend: str, request: pytest.FixtureRequest, clean, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    settings = backend_settings(
        backend, request, clean, tmp_path / "home", rate=1000, publish_limit=5000, history_batch=500, seed=3
    )
    writer = daemons("history", settings)
    publisher = daemons("publisher", settings)
    store = open_store(settings, read_only=True)

    # Act: kill -9 while ticks flow, then crash at the two worst moments: a batch fetched but
    # not committed (it must come back), and a batch committed but not acked (it comes back too)
    wait_for(lambda: store.count() > 1000, 30, what="some ticks stored")
    writer.kill()
    time.sleep(0.5)  # ticks keep arriving in the stream meanwhile
    for point in ("history.before_commit@3", "history.after_commit@2"):
        writer.crash_at(point)
    writer.start()
    wait_for(lambda: "limit reached" in publisher.log(), 60, what="the publisher done")
    in_stream = stream_ticks(clean.nats_url)  # (a publisher behind its pace skips ticks: count what it sent)
    assert len(in_stream) > 5000
    wait_for(lambda: store.count() == len(in_stream), 60, what="every tick of the stream stored")

    # Assert: exactly the stream's ticks, once each; candles folded each tick once
    rows = stored(store)
    assert len(rows) == len(set(rows)) == len(in_stream)
    assert set(rows) == in_stream
    for sym in ("AAPL", "MSFT"):
        ticks_of = [r for r in rows if r[0] == sym]
        for iv in ("1s", "1m", "1h"):
            candles = store.candles(sym, iv, limit=10_000)
            assert sum(c.count for c in candles) == len(ticks_of), iv
            assert sum(c.volume for c in candles) == sum(r[4] for r in ticks_of), iv
    # The batch committed but not acked comes back only after the consumer's ack wait (10 s), and
    # may come after every tick is already stored: wait for it to be seen and skipped.
    doc = wait_for(
        lambda: (status_of(writer).get("counters") or {}).get("duplicates", 0) > 0 and status_of(writer)["counters"],
        40,
        what="the redelivered batch",
    )
    assert doc.get("duplicates", 0) > 0, "the redelivered batch after the failpoint was seen and skipped"
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_retention_prunes_period_after_period(
    backend: str, request: pytest.FixtureRequest, clean, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    retention_s = 2.0
    settings = backend_settings(
        backend,
        request,
        clean,
        tmp_path / "home",
        rate=40,
        history_retention="2s",
        history_prune_interval_s=0.5,
    )
    writer = daemons("history", settings)
    daemons("publisher", settings)
    store = open_store(settings, read_only=True)
    wait_for(lambda: store.count() > 50, 20, what="ticks stored")

    # Assert: over 4 retention periods the oldest stored tick is never much older than the retention
    oldest_ages = []
    counts = []
    deadline = time.monotonic() + 4 * retention_s
    while time.monotonic() < deadline:
        now = time.time_ns()
        first = [store.ticks(sym, limit=1) for sym in ("AAPL", "MSFT")]
        oldest_ages += [(now - page[0].ts) / S for page in first if page]
        counts.append(store.count())
        for sym in ("AAPL", "MSFT"):
            assert all(c.start >= now - 4 * retention_s * S for c in store.candles(sym, "1s", limit=10_000))
        time.sleep(0.25)
    # retention + one prune interval + a batch's slack
    assert max(oldest_ages) < retention_s + 0.5 + 1.0, oldest_ages
    assert max(counts) < 2 * 40 * (retention_s + 1.5), counts  # bounded, while the stream keeps growing
    pruned = status_of(writer)["counters"].get("pruned", 0)
    assert pruned > 2 * 40 * 3 * retention_s * 0.5, pruned  # pruned in several periods, not once
    assert len(stream_ticks(clean.nats_url)) > max(counts) + pruned // 2
    store.close()


def test_ticks_older_than_the_retention_are_not_stored_and_0_keeps_everything(
    clean, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    settings = make_settings(clean, tmp_path / "home", rate=200, publish_limit=300)
    daemons("publisher", settings)
    wait_for(lambda: len(stream_ticks(clean.nats_url)) == 600, 30, what="600 ticks in the stream")
    time.sleep(1.5)

    # A writer whose retention is shorter than the ticks' age stores none of them
    short = make_settings(clean, tmp_path / "short", history_retention="1s", history_prune_interval_s=0.5)
    d = daemons("history", short)
    wait_for(lambda: status_of(d).get("counters", {}).get("expired") == 600, 20, what="600 expired ticks")
    assert open_store(short, read_only=True).count() == 0
    assert d.terminate() == 0  # SIGTERM drains and exits 0 (it once hung in the drain of its pull subscription)

    # One that keeps forever (a fresh consumer position) stores all of them
    async def forget_position() -> None:
        nc = await nats.connect(clean.nats_url)
        await nc.jetstream().delete_consumer(names.TICK_STREAM, names.HISTORY_DURABLE)
        await nc.close()

    asyncio.run(forget_position())
    forever = make_settings(clean, tmp_path / "forever", history_retention="0", history_prune_interval_s=0.5)
    daemons("history", forever)
    store = open_store(forever, read_only=True)
    wait_for(lambda: store.count() == 600, 20, what="600 ticks kept")
    time.sleep(1.5)  # several prune periods: nothing goes
    assert store.count() == 600
