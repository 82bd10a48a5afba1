"""The PostgreSQL history store (``STOCKCTL_HISTORY_URL=postgresql://...``), through psycopg 3.

Same tables and contract as the SQLite store. A batch is COPYed into a temporary table and
moved with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``, so the database
itself says which ticks were new; those are folded into the candles in the same
transaction. If the database can load TimescaleDB when ``ticks`` is created, it is a hypertable
on ``ts`` (one-day chunks); a hypertable's unique key must hold its time column, so there the
key is ``(symbol, seq, ts)``, which a redelivered tick (the same message) still collides with.
A ``ticks`` table that already exists as a plain table stays one (its key has no ``ts``, so
``create_hypertable`` would fail on every start); the writer logs that once when it opens.
Tables from before the ``qty`` columns get them when the writer opens the store (``ALTER TABLE
... ADD COLUMN IF NOT EXISTS ... DEFAULT 0``: no table rewrite since PostgreSQL 11); a
read-only open is a :class:`~stockctl.history.HistoryError` until then.

A read-only store (the gateway's, the CLI's export) sets its session read-only, so it cannot
change anything even if the URL's role could.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import psycopg

from stockctl.history import (
    HistoryError,
    HistoryStore,
    TickRow,
    candle_from_row,
    candle_params,
    fold_candles,
    interval_seconds,
)
from stockctl.settings import mask_url
from stockctl.wire.marketdata import Candle

SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (
    symbol TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    price BIGINT NOT NULL,
    volume BIGINT NOT NULL,
    qty BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY ({key})
);
CREATE INDEX IF NOT EXISTS ticks_by_time ON ticks (symbol, ts, seq);
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL,
    iv INTEGER NOT NULL,
    start BIGINT NOT NULL,
    open BIGINT NOT NULL,
    high BIGINT NOT NULL,
    low BIGINT NOT NULL,
    close BIGINT NOT NULL,
    volume BIGINT NOT NULL,
    count BIGINT NOT NULL,
    open_ts BIGINT NOT NULL,
    open_seq BIGINT NOT NULL,
    close_ts BIGINT NOT NULL,
    close_seq BIGINT NOT NULL,
    qty BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, iv, start)
);
CREATE TABLE IF NOT EXISTS symbols (symbol TEXT PRIMARY KEY);
ALTER TABLE ticks ADD COLUMN IF NOT EXISTS qty BIGINT NOT NULL DEFAULT 0;
ALTER TABLE candles ADD COLUMN IF NOT EXISTS qty BIGINT NOT NULL DEFAULT 0;
"""
# The two ALTERs bring a store from before exact quantities up to date; on a new one they are no-ops.

TICK_COLUMNS = "symbol, seq, ts, price, volume, qty"

CANDLE_UPSERT = """
INSERT INTO candles
    (symbol, iv, start, open, high, low, close, volume, count, open_ts, open_seq, close_ts, close_seq, qty)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
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
    high = GREATEST(candles.high, excluded.high),
    low = LEAST(candles.low, excluded.low),
    volume = candles.volume + excluded.volume,
    qty = candles.qty + excluded.qty,
    count = candles.count + excluded.count
"""

DAY_NS = 86_400_000_000_000

log = logging.getLogger("stockctl.history")


class PostgresStore(HistoryStore):
    """History in a PostgreSQL (or TimescaleDB) database."""

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.read_only, self.where = read_only, mask_url(url) or ""
        self._lock = threading.Lock()
        self.hypertable = False
        try:
            self.db = psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise HistoryError(
                f"cannot connect to the history database {self.where}: {reason}", "check STOCKCTL_HISTORY_URL"
            ) from None
        if read_only:
            self.db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            if self._predates_qty():
                self.db.close()
                raise HistoryError(
                    f"the history store {self.where} predates exact quantities", "the history daemon upgrades it"
                )
            return
        with self.db.transaction():
            timescale = self._timescale_available()
            exists = self.db.execute("SELECT to_regclass('ticks') IS NOT NULL").fetchone()[0]  # type: ignore[index]
            self.hypertable = timescale and not exists
            self.db.execute(SCHEMA.format(key="symbol, seq, ts" if self.hypertable else "symbol, seq"))
            if self.hypertable:
                self.db.execute("SELECT create_hypertable('ticks', 'ts', chunk_time_interval => %s::bigint)", (DAY_NS,))
            elif timescale:
                self.hypertable = self._is_hypertable()
                if not self.hypertable:
                    log.info(
                        "TimescaleDB is available, but the ticks table of %s predates it and stays a plain"
                        " table (a hypertable's key needs ts); rename it away to start a hypertable",
                        self.where,
                    )
        self.db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage"
            " (symbol TEXT, seq BIGINT, ts BIGINT, price BIGINT, volume BIGINT, qty BIGINT)"
        )

    def _timescale_available(self) -> bool:
        """True if TimescaleDB is (or can be) loaded here; an unprivileged role just goes without."""
        row = self.db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        if row is None:
            return False
        try:
            with self.db.transaction():
                self.db.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error:
            return False
        return True

    def _predates_qty(self) -> bool:
        """Whether ``ticks`` exists without its ``qty`` column (made by an earlier version)."""
        row = self.db.execute(
            "SELECT to_regclass('ticks') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'ticks' AND column_name = 'qty')"
        ).fetchone()
        return bool(row and row[0])

    def _is_hypertable(self) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'ticks'"
            " AND hypertable_schema = current_schema()"
        ).fetchone()
        return row is not None

    def write(self, rows: Sequence[TickRow]) -> int:
        if self.read_only:
            raise HistoryError(f"the history store {self.where} is open read-only", "the history daemon writes it")
        if not rows:
            return 0
        with self._lock, self.db.transaction(), self.db.cursor() as cur:
            cur.execute("TRUNCATE stage")
            with cur.copy(f"COPY stage ({TICK_COLUMNS}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row((r.symbol, r.seq, r.ts, r.price, r.volume, r.qty))
            cur.execute(
                f"INSERT INTO ticks ({TICK_COLUMNS}) SELECT {TICK_COLUMNS} FROM stage"
                f" ON CONFLICT DO NOTHING RETURNING {TICK_COLUMNS}"
            )
            new = [TickRow(*row) for row in cur.fetchall()]
            if new:
                cur.executemany(CANDLE_UPSERT, candle_params(fold_candles(new)))
                cur.executemany(
                    "INSERT INTO symbols VALUES (%s) ON CONFLICT DO NOTHING", [(s,) for s in {r.symbol for r in new}]
                )
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
        where, args = ["symbol = %s"], [symbol]
        if start is not None:
            where.append("ts >= %s")
            args.append(start)
        if end is not None:
            where.append("ts < %s")
            args.append(end)
        if after is not None:
            where.append("(ts, seq) > (%s, %s)")
            args.extend(after)
        order = "DESC" if latest else "ASC"
        sql = f"SELECT {TICK_COLUMNS} FROM ticks WHERE {' AND '.join(where)} ORDER BY ts {order}, seq {order} LIMIT %s"
        with self._lock:
            rows = [TickRow(*r) for r in self.db.execute(sql, (*args, limit)).fetchall()]
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
        where, args = ["symbol = %s", "iv = %s"], [symbol, interval_seconds(interval)]
        for cond, value in (("start >= %s", start), ("start < %s", end), ("start > %s", after)):
            if value is not None:
                where.append(cond)
                args.append(value)
        order = "DESC" if latest else "ASC"
        sql = (
            f"SELECT start, open, high, low, close, volume, count, qty FROM candles WHERE {' AND '.join(where)}"
            f" ORDER BY start {order} LIMIT %s"
        )
        with self._lock:
            rows = [candle_from_row(symbol, interval, r) for r in self.db.execute(sql, (*args, limit)).fetchall()]
        return rows[::-1] if latest else rows

    def prune(self, cutoff_ns: int) -> int:
        deleted = 0
        for symbol in self.symbols():  # per symbol: each delete is a range of the (symbol, ts) index
            with self._lock, self.db.transaction():
                cur = self.db.execute("DELETE FROM ticks WHERE symbol = %s AND ts < %s", (symbol, cutoff_ns))
                deleted += cur.rowcount
                self.db.execute("DELETE FROM candles WHERE symbol = %s AND start < %s", (symbol, cutoff_ns))
        return deleted

    def symbols(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT symbol FROM symbols ORDER BY symbol").fetchall()]

    def count(self, symbol: str | None = None) -> int:
        with self._lock:
            if symbol is None:
                return self.db.execute("SELECT count(*) FROM ticks").fetchone()[0]  # type: ignore[index]
            return self.db.execute("SELECT count(*) FROM ticks WHERE symbol = %s", (symbol,)).fetchone()[0]  # type: ignore[index]

    def close(self) -> None:
        with self._lock:
            self.db.close()
