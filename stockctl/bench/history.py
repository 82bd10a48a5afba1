"""``stockctl bench history``: write N ticks to the history store and read them back, beside a
raw baseline (a bare ``executemany`` INSERT of the same rows, one transaction per batch, into
a table with the same key but no staging, no conflict check and no candles).

SQLite runs in a temporary directory; PostgreSQL (``--url``) in a scratch schema of that
database that is dropped afterwards. Nothing of a running instance is touched.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stockctl.history import HistoryStore, TickRow
from stockctl.settings import mask_url

DEFAULT_TICKS = 1_000_000
QUICK_TICKS = 50_000
SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA")
T0 = 1_700_000_000_000_000_000


def make_rows(n: int) -> list[TickRow]:
    """n ticks over five symbols, a millisecond apart, prices walking by cents."""
    rows = []
    for i in range(n):
        sym = SYMBOLS[i % len(SYMBOLS)]
        rows.append(
            TickRow(
                sym,
                i // len(SYMBOLS) + 1,
                T0 + i * 1_000_000,
                10_000_000_000 + (i * 7919 % 5000) * 1_000_000,
                1 + i % 10,
            )
        )
    return rows


@dataclass
class BackendResult:
    backend: str
    where: str
    ticks: int
    batch: int
    raw_write_per_s: float
    write_per_s: float
    read_per_s: float
    read_back: int
    candles_1m: int
    candles_1m_read_s: float
    rewrite_per_s: float
    """The same batches again: every tick a duplicate (what a redelivery costs)."""

    @property
    def write_ratio(self) -> float:
        return self.write_per_s / self.raw_write_per_s if self.raw_write_per_s else 0.0


@dataclass
class HistoryBenchResult:
    backends: list[BackendResult] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        return {
            "backends": [{**asdict(b), "write_ratio": round(b.write_ratio, 3)} for b in self.backends],
            "elapsed_s": round(self.elapsed_s, 1),
        }


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _batches(rows: list[TickRow], batch: int) -> Iterator[list[TickRow]]:
    for i in range(0, len(rows), batch):
        yield rows[i : i + batch]


def _measure(
    backend: str,
    store: HistoryStore,
    raw: Callable[[list[TickRow]], None],
    rows: list[TickRow],
    batch: int,
    progress: Callable[[str], None],
) -> BackendResult:
    progress(f"{backend}: raw executemany baseline")
    raw_s = _timed(lambda: [raw(b) for b in _batches(rows, batch)])
    progress(f"{backend}: writing {len(rows):,} ticks through the store")
    write_s = _timed(lambda: [store.write(b) for b in _batches(rows, batch)])
    progress(f"{backend}: writing them again (all duplicates)")
    rewrite_s = _timed(lambda: [store.write(b) for b in _batches(rows, batch)])
    progress(f"{backend}: reading them back")
    read_back = 0

    def read_all() -> None:
        nonlocal read_back
        for sym in SYMBOLS:
            after = None
            while True:
                page = store.ticks(sym, after=after, limit=10_000)
                read_back += len(page)
                if len(page) < 10_000:
                    break
                after = (page[-1].ts, page[-1].seq)

    read_s = _timed(read_all)
    candles: list[Any] = []
    c_s = _timed(lambda: candles.extend(store.candles(SYMBOLS[0], "1m", limit=10_000)))
    return BackendResult(
        backend,
        store.where,
        len(rows),
        batch,
        round(_rate(len(rows), raw_s)),
        round(_rate(len(rows), write_s)),
        round(_rate(read_back, read_s)),
        read_back,
        len(candles),
        round(c_s, 4),
        round(_rate(len(rows), rewrite_s)),
    )


def bench_sqlite(rows: list[TickRow], batch: int, progress: Callable[[str], None]) -> BackendResult:
    from stockctl.history.sqlite import SqliteStore

    tmp = Path(tempfile.mkdtemp(prefix="stockctl-bench-history-"))
    try:
        raw_db = sqlite3.connect(tmp / "raw.sqlite3", isolation_level=None)
        raw_db.execute("PRAGMA journal_mode=WAL")
        raw_db.execute("PRAGMA synchronous=FULL")
        raw_db.execute(
            "CREATE TABLE ticks (symbol TEXT, seq INTEGER, ts INTEGER, price INTEGER, volume INTEGER,"
            " PRIMARY KEY (symbol, seq)) WITHOUT ROWID"
        )

        def raw(b: list[TickRow]) -> None:
            raw_db.execute("BEGIN")
            raw_db.executemany(
                "INSERT INTO ticks VALUES (?, ?, ?, ?, ?)", [(r.symbol, r.seq, r.ts, r.price, r.volume) for r in b]
            )
            raw_db.execute("COMMIT")

        store = SqliteStore(tmp / "history.sqlite3")
        try:
            result = _measure("sqlite", store, raw, rows, batch, progress)
        finally:
            store.close()
            raw_db.close()
        result.where = "temp dir (WAL, synchronous=FULL)"
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_postgres(url: str, rows: list[TickRow], batch: int, progress: Callable[[str], None]) -> BackendResult:
    import psycopg

    from stockctl.history.postgres import PostgresStore

    schema = f"stockctl_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(url, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    try:
        raw_db = psycopg.connect(scoped)
        raw_db.execute(
            "CREATE TABLE raw_ticks (symbol TEXT, seq BIGINT, ts BIGINT, price BIGINT, volume BIGINT,"
            " PRIMARY KEY (symbol, seq))"
        )
        raw_db.commit()

        def raw(b: list[TickRow]) -> None:
            with raw_db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO raw_ticks VALUES (%s, %s, %s, %s, %s)",
                    [(r.symbol, r.seq, r.ts, r.price, r.volume) for r in b],
                )
            raw_db.commit()

        store = PostgresStore(scoped)
        try:
            result = _measure("postgres", store, raw, rows, batch, progress)
        finally:
            store.close()
            raw_db.close()
        result.where = mask_url(url) or ""
        return result
    finally:
        with contextlib.suppress(Exception):
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def run_history_bench(
    ticks: int, batch: int, url: str | None, progress: Callable[[str], None] = lambda _: None
) -> HistoryBenchResult:
    started = time.perf_counter()
    progress(f"making {ticks:,} ticks")
    rows = make_rows(ticks)
    result = HistoryBenchResult()
    result.backends.append(bench_sqlite(rows, batch, progress))
    if url:
        result.backends.append(bench_postgres(url, rows, batch, progress))
    result.elapsed_s = time.perf_counter() - started
    return result
