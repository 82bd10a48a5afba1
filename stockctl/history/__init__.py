"""The history store: every tick and its 1s, 1m and 1h candles, kept as long as the user wants.

Redis keeps the last ``STOCKCTL_HISTORY_LIMIT`` points per symbol; this store keeps
everything newer than ``STOCKCTL_HISTORY_RETENTION`` (``"30d"``; ``"0"`` keeps forever).
One interface, two backends:

* SQLite (the default): ``<home>/data/history.sqlite3``, WAL, one transaction per batch,
  ``synchronous=FULL`` so an acknowledged batch survives a power cut, not only a crash.
* PostgreSQL by URL (``STOCKCTL_HISTORY_URL=postgresql://...``) through psycopg 3; a
  TimescaleDB hypertable when that extension is available as the ``ticks`` table is created.

Contract:

* :meth:`HistoryStore.write` is idempotent by ``(symbol, seq)``: a tick already stored
  changes nothing (``ON CONFLICT DO NOTHING``), and only the ticks actually inserted are
  folded into the candles, in the same transaction. So at-least-once delivery of ticks
  gives exactly-once ticks and candles.
* Candle open/close are the first/last tick of the bucket by ``(ts, seq)`` (a late tick
  still lands in its bucket), high/low/volume/count over every stored tick of it.
* Ticks read oldest first by ``(ts, seq)``; a page continues after the cursor
  ``"TS:SEQ"`` of its last point (``ts`` ns, ``seq``), candles after a bucket start (ns).
* Prices are integer units of 1e-8 inside (:mod:`stockctl.marketdata.money`), decimal strings out;
  so is a live feed's exact traded quantity (``qty``, 0 for a tick without one: a simulated tick
  counts whole units in ``volume``). Candles sum both; a candle read out has the processor's
  shape: ``volume`` plus the whole units of ``qty``, and ``qty`` exact.
* A store made before ``qty`` existed gets the column in place (``ALTER TABLE ... ADD COLUMN
  qty ... DEFAULT 0``) when the writer opens it: its old ticks keep ``qty`` 0.
* Retention prunes ticks and candles older than the cutoff; ticks older than it arriving
  late are not stored (they would be pruned at once).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stockctl.errors import StockctlError, UsageError
from stockctl.marketdata.money import SCALE, from_units, qty_text
from stockctl.wire.marketdata import Candle, PricePoint

if TYPE_CHECKING:
    from stockctl.settings import Settings

INTERVALS: dict[str, int] = {"1s": 1_000_000_000, "1m": 60_000_000_000, "1h": 3_600_000_000_000}
"""Candle intervals the store keeps, name -> nanoseconds."""

MAX_PAGE = 10_000
"""Most rows one read returns (REST pages; the export pages through)."""

SQLITE_FILE = "history.sqlite3"


class HistoryError(StockctlError):
    """The history store cannot be opened or written."""


def parse_cursor(text: str) -> tuple[int, int]:
    """A tick cursor ``"TS:SEQ"`` -> ``(ts, seq)``; UsageError if it is not one."""
    ts, sep, seq = text.strip().partition(":")
    if not sep or not ts.isdigit() or not seq.isdigit() or len(ts) > 19 or len(seq) > 19:
        raise UsageError(f"bad cursor {text[:40]!r}", "use the TS:SEQ of the last point of the previous page")
    return int(ts), int(seq)


def cursor_of(point: PricePoint) -> str:
    return f"{point.ts}:{point.seq}"


@dataclass(frozen=True, slots=True)
class TickRow:
    """One stored tick (price in integer units)."""

    symbol: str
    seq: int
    ts: int
    price: int
    volume: int
    qty: int = 0
    """Exact traded quantity in 1e-8 units (a live feed's ``Tick.qty``); 0 when the tick has none."""

    def point(self) -> PricePoint:
        return PricePoint(from_units(self.price), self.ts, self.seq)


@dataclass(slots=True)
class CandleAgg:
    """A candle being folded, with the ``(ts, seq)`` keys of its open and close."""

    open: int
    high: int
    low: int
    close: int
    volume: int
    qty: int
    count: int
    open_key: tuple[int, int]
    close_key: tuple[int, int]


CandleKey = tuple[str, int, int]  # symbol, interval seconds, bucket start ns


def fold_candles(rows: Iterable[TickRow]) -> dict[CandleKey, CandleAgg]:
    """The candles of every interval that ``rows`` (newly stored ticks) add up to."""
    out: dict[CandleKey, CandleAgg] = {}
    for r in rows:
        key_ts = (r.ts, r.seq)
        for iv_ns in INTERVALS.values():
            key = (r.symbol, iv_ns // 1_000_000_000, r.ts - r.ts % iv_ns)
            agg = out.get(key)
            if agg is None:
                out[key] = CandleAgg(r.price, r.price, r.price, r.price, r.volume, r.qty, 1, key_ts, key_ts)
                continue
            agg.high = max(agg.high, r.price)
            agg.low = min(agg.low, r.price)
            agg.volume += r.volume
            agg.qty += r.qty
            agg.count += 1
            if key_ts < agg.open_key:
                agg.open, agg.open_key = r.price, key_ts
            if key_ts > agg.close_key:
                agg.close, agg.close_key = r.price, key_ts
    return out


def candle_params(folded: dict[CandleKey, CandleAgg]) -> list[tuple[object, ...]]:
    """Rows for the backends' candle upsert, in its column order."""
    return [
        (sym, iv, start, a.open, a.high, a.low, a.close, a.volume, a.count, *a.open_key, *a.close_key, a.qty)
        for (sym, iv, start), a in folded.items()
    ]


def interval_seconds(interval: str) -> int:
    if interval not in INTERVALS:
        raise UsageError(f"no {interval} candles in the history store", f"stored intervals: {', '.join(INTERVALS)}")
    return INTERVALS[interval] // 1_000_000_000


def candle_from_row(symbol: str, interval: str, row: Sequence[int]) -> Candle:
    """A stored candle (``start, open, high, low, close, volume, count, qty``) as the processor shapes it."""
    start, o, h, lo, c, vol, count, qty = row
    return Candle(
        symbol,
        interval,
        start,
        from_units(o),
        from_units(h),
        from_units(lo),
        from_units(c),
        vol + qty // SCALE,
        count,
        qty_text(qty),
    )


class HistoryStore(ABC):
    """Ticks and candles of every symbol; a backend is a connection to one database.

    Methods are blocking (async callers use ``asyncio.to_thread``); one store object is safe
    to share between threads: each call takes its lock.
    """

    read_only: bool
    where: str
    """Where the data is, for messages and logs (a path, or a URL without its password)."""

    @abstractmethod
    def write(self, rows: Sequence[TickRow]) -> int:
        """Store the ticks not stored yet and fold them into candles, in one transaction;
        return how many were new."""

    @abstractmethod
    def ticks(
        self,
        symbol: str,
        start: int | None = None,
        end: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
        latest: bool = False,
    ) -> list[TickRow]:
        """Ticks with ``start <= ts < end`` and ``(ts, seq) > after``, oldest first: the first
        ``limit`` of them, or the last ``limit`` with ``latest``."""

    @abstractmethod
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
        """Candles whose bucket starts in ``[start, end)`` and after ``after``, oldest first."""

    @abstractmethod
    def prune(self, cutoff_ns: int) -> int:
        """Delete ticks and candles older than ``cutoff_ns``; return the ticks deleted."""

    @abstractmethod
    def symbols(self) -> list[str]: ...

    @abstractmethod
    def count(self, symbol: str | None = None) -> int:
        """Ticks stored (of one symbol, or all)."""

    @abstractmethod
    def close(self) -> None: ...


def sqlite_path(settings: Settings) -> Path:
    return settings.data_dir / SQLITE_FILE


def open_store(settings: Settings, read_only: bool = False) -> HistoryStore:
    """The configured store: PostgreSQL if ``history_url`` is set, else SQLite in the state dir.

    Read-only opens never create anything: a SQLite file that does not exist yet (the writer
    has not run) is a :class:`HistoryError`.
    """
    url = settings.history_url
    if url:
        from stockctl.history.postgres import PostgresStore

        return PostgresStore(url, read_only=read_only)
    from stockctl.history.sqlite import SqliteStore

    return SqliteStore(sqlite_path(settings), read_only=read_only)


def retention_cutoff(retention_ns: int, now_ns: int | None = None) -> int | None:
    """The oldest timestamp kept (None: keep forever)."""
    if retention_ns <= 0:
        return None
    return (now_ns if now_ns is not None else time.time_ns()) - retention_ns
