"""The SQLite history store (the default): one file in the state dir, WAL, batched writes.

Why SQLite rather than DuckDB: the writer's work is many small transactions of appended
rows with a primary-key conflict check, and the readers' work is short index range scans
(a page of one symbol's ticks); that is what SQLite's B-trees do well, it ships with
Python (no dependency), and its WAL lets the gateway read while the writer writes.
DuckDB is columnar and shines at scanning whole columns, but its per-transaction cost
and its single-writer file lock (another process cannot even open the file read-only
while the writer has it) fit a live append log and a separate reading gateway worse.

Tables: ``ticks`` (PRIMARY KEY (symbol, seq), WITHOUT ROWID, plus an index on
(symbol, ts, seq) for time ranges and pages), ``candles`` (PRIMARY KEY (symbol, iv, start)),
``symbols``. A file from before the ``qty`` columns gets them when the writer opens it (an
``ALTER TABLE ... ADD COLUMN``, which SQLite does without rewriting the table); a read-only
open of such a file is a :class:`~stockctl.history.HistoryError` until then. A temporary
``stage`` table takes each batch so that one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` tells which ticks were new.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from stockctl.history import (
    HistoryError,
    HistoryStore,
    TickRow,
    candle_from_row,
    candle_params,
    fold_candles,
    interval_seconds,
)
from stockctl.wire.marketdata import Candle

SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (
    symbol TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    price INTEGER NOT NULL,
    volume INTEGER NOT NULL,
    qty INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ticks_by_time ON ticks (symbol, ts, seq);
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL,
    iv INTEGER NOT NULL,
    start INTEGER NOT NULL,
    open INTEGER NOT NULL,
    high INTEGER NOT NULL,
    low INTEGER NOT NULL,
    close INTEGER NOT NULL,
    volume INTEGER NOT NULL,
    count INTEGER NOT NULL,
    open_ts INTEGER NOT NULL,
    open_seq INTEGER NOT NULL,
    close_ts INTEGER NOT NULL,
    close_seq INTEGER NOT NULL,
    qty INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, iv, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS symbols (symbol TEXT PRIMARY KEY) WITHOUT ROWID;
"""

CANDLE_UPSERT = """
INSERT INTO candles
    (symbol, iv, start, open, high, low, close, volume, count, open_ts, open_seq, close_ts, close_seq, qty)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (symbol, iv, start) DO UPDATE SET
    open = CASE WHEN (excluded.open_ts, excluded.open_seq) < (candles.open_ts, candles.open_seq)
        THEN excluded.open ELSE candles.open END,
    open_ts = CASE WHEN (excluded.open_ts, excluded.open_seq) < (candles.open_ts, candles.open_seq)
        THEN excluded.open_ts ELSE candles.open_ts END,
    open_seq = CASE WHEN (excluded.open_ts, excluded.open_seq) < (candles.open_ts, candles.open_seq)
        THEN excluded.open_seq ELSE candles.open_seq END,
    close = CASE WHEN (excluded.close_ts, excluded.close_seq) > (candles.close_ts, candles.close_seq)
        THEN excluded.close ELSE candles.close END,
    close_ts = CASE WHEN (excluded.close_ts, excluded.close_seq) > (candles.close_ts, candles.close_seq)
        THEN excluded.close_ts ELSE candles.close_ts END,
    close_seq = CASE WHEN (excluded.close_ts, excluded.close_seq) > (candles.close_ts, candles.close_seq)
        THEN excluded.close_seq ELSE candles.close_seq END,
    high = max(candles.high, excluded.high),
    low = min(candles.low, excluded.low),
    volume = candles.volume + excluded.volume,
    qty = candles.qty + excluded.qty,
    count = candles.count + excluded.count
"""

QTY_COLUMN = "qty INTEGER NOT NULL DEFAULT 0"
"""What a store made before exact quantities gets added to ``ticks`` and ``candles``."""

TICK_COLUMNS = "symbol, seq, ts, price, volume, qty"

PRUNE_CHUNK = 20_000


class SqliteStore(HistoryStore):
    """History in one SQLite file."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path, self.read_only, self.where = path, read_only, str(path)
        self._lock = threading.Lock()
        try:
            if read_only:
                if not path.exists():
                    raise HistoryError(f"no history store at {path} yet", "the history daemon creates it")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")  # a commit (then an ack) survives a power cut
                self.db.execute("PRAGMA temp_store=MEMORY")
                self.db.executescript(SCHEMA)
                for table in self._without_qty():
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {QTY_COLUMN}")
                self.db.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS stage (symbol TEXT, seq INTEGER, ts INTEGER,"
                    " price INTEGER, volume INTEGER, qty INTEGER, PRIMARY KEY (symbol, seq)) WITHOUT ROWID"
                )
                path.chmod(0o600)
            self.db.execute("PRAGMA busy_timeout=5000")
            old = read_only and self._without_qty()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot open the history store {path}: {exc}", "check the state dir") from None
        if old:
            self.db.close()
            raise HistoryError(f"the history store {path} predates exact quantities", "the history daemon upgrades it")

    def _without_qty(self) -> list[str]:
        """The tables still lacking the ``qty`` column (a store from an earlier version)."""
        return [
            table
            for table in ("ticks", "candles")
            if "qty" not in {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
        ]

    def write(self, rows: Sequence[TickRow]) -> int:
        if self.read_only:
            raise HistoryError(f"the history store {self.where} is open read-only", "the history daemon writes it")
        if not rows:
            return 0
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM stage")
                db.executemany(
                    "INSERT OR IGNORE INTO stage VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.symbol, r.seq, r.ts, r.price, r.volume, r.qty) for r in rows],
                )
                new = [
                    TickRow(*row)
                    for row in db.execute(
                        f"INSERT INTO ticks ({TICK_COLUMNS}) SELECT {TICK_COLUMNS} FROM stage WHERE true"
                        f" ON CONFLICT DO NOTHING RETURNING {TICK_COLUMNS}"
                    )
                ]
                if new:
                    db.executemany(CANDLE_UPSERT, candle_params(fold_candles(new)))
                    db.executemany("INSERT OR IGNORE INTO symbols VALUES (?)", [(s,) for s in {r.symbol for r in new}])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return len(new)

    def ticks(
        self,
        symbol: str,
        start: int | None = None,
        end: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
        latest: bool = False,
    ) -> list[TickRow]:
        where, args = ["symbol = ?"], [symbol]
        if start is not None:
            where.append("ts >= ?")
            args.append(start)
        if end is not None:
            where.append("ts < ?")
            args.append(end)
        if after is not None:
            where.append("(ts, seq) > (?, ?)")
            args.extend(after)
        order = "DESC" if latest else "ASC"
        sql = (
            f"SELECT {TICK_COLUMNS} FROM ticks INDEXED BY ticks_by_time WHERE {' AND '.join(where)}"
            f" ORDER BY ts {order}, seq {order} LIMIT ?"
        )
        with self._lock:
            rows = [TickRow(*r) for r in self.db.execute(sql, (*args, limit))]
        return rows[::-1] if latest else rows

    def candles(
        self,
        symbol: str,
        interval: str,
        start: int | None = None,
        end: int | None = None,
        after: int | None = None,
        limit: int = 100,
        latest: bool = False,
    ) -> list[Candle]:
        where, args = ["symbol = ?", "iv = ?"], [symbol, interval_seconds(interval)]
        for cond, value in (("start >= ?", start), ("start < ?", end), ("start > ?", after)):
            if value is not None:
                where.append(cond)
                args.append(value)
        order = "DESC" if latest else "ASC"
        sql = (
            f"SELECT start, open, high, low, close, volume, count, qty FROM candles WHERE {' AND '.join(where)}"
            f" ORDER BY start {order} LIMIT ?"
        )
        with self._lock:
            rows = [candle_from_row(symbol, interval, r) for r in self.db.execute(sql, (*args, limit))]
        return rows[::-1] if latest else rows

    def prune(self, cutoff_ns: int) -> int:
        deleted = 0
        for symbol in self.symbols():
            while True:  # in chunks: the writer's next batch never waits behind one huge delete
                with self._lock:
                    self.db.execute("BEGIN IMMEDIATE")
                    try:
                        cur = self.db.execute(
                            "DELETE FROM ticks WHERE symbol = ? AND seq IN (SELECT seq FROM ticks"
                            " INDEXED BY ticks_by_time WHERE symbol = ? AND ts < ? LIMIT ?)",
                            (symbol, symbol, cutoff_ns, PRUNE_CHUNK),
                        )
                        n = cur.rowcount
                        self.db.execute("DELETE FROM candles WHERE symbol = ? AND start < ?", (symbol, cutoff_ns))
                        self.db.execute("COMMIT")
                    except BaseException:
                        self.db.execute("ROLLBACK")
                        raise
                deleted += n
                if n < PRUNE_CHUNK:
                    break
        return deleted

    def symbols(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT symbol FROM symbols ORDER BY symbol")]

    def count(self, symbol: str | None = None) -> int:
        with self._lock:
            if symbol is None:
                return self.db.execute("SELECT count(*) FROM ticks").fetchone()[0]
            return self.db.execute("SELECT count(*) FROM ticks WHERE symbol = ?", (symbol,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()
