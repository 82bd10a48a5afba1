"""History and candle reads for the gateway: Redis's recent window, the history store beyond it.

Without a range a read is the latest ``limit`` points (or candles), as it always was: from
Redis when Redis holds that many, else topped up from the store. With a range (``since``,
``from``/``to``) or a cursor (``after``) it is the first ``limit`` items of the range, oldest
first. Redis alone answers when its window starts before the range does; otherwise the
store's page and Redis's window are merged (the store lags the stream by at most a batch,
Redis does not), de-duplicated by seq (ticks) or bucket start (candles), so a page is the
same whichever side a point came from.

The store is opened read-only, lazily: until the history daemon has created it (or when the
database is unreachable) reads are answered from Redis alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from stockctl.errors import UsageError
from stockctl.history import INTERVALS, MAX_PAGE, HistoryError, HistoryStore, cursor_of, open_store, parse_cursor
from stockctl.marketdata.replay import parse_timestamp
from stockctl.marketdata.store import MarketStore
from stockctl.settings import Settings, parse_duration
from stockctl.wire.marketdata import Candle, PricePoint

log = logging.getLogger("stockctl.history")

RETRY_OPEN_S = 5.0
T = TypeVar("T")


def parse_time(text: str, what: str) -> int:
    """ISO 8601 (naive is UTC) or epoch s/ms/us/ns -> ns; UsageError naming the parameter."""
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise UsageError(f"bad {what}: {exc}") from None


def time_range(since: str | None, start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``since`` (a duration back from now) or ``from``, and ``to``, as ns bounds ``[start, end)``."""
    if since is not None and start is not None:
        raise UsageError("since and from both given", "use one of them: since=2h or from=2024-05-01T09:30")
    lo = None
    if since is not None:
        try:
            ns = parse_duration(since)
        except ValueError as exc:
            raise UsageError(f"bad since: {exc}") from None
        if ns == 0:
            raise UsageError("bad since: 0", "use a duration such as 90s, 2h or 30d")
        lo = time.time_ns() - ns
    elif start is not None:
        lo = parse_time(start, "from")
    hi = parse_time(end, "to") if end is not None else None
    if lo is not None and hi is not None and hi <= lo:
        raise UsageError("to is not after from", "give a range that ends after it starts")
    return lo, hi


def check_page(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit {limit} out of range", f"use 1 to {MAX_PAGE}")
    return limit


class HistoryReader:
    """Ticks and candles from Redis and, beyond its window, from the history store."""

    def __init__(self, settings: Settings, market: MarketStore) -> None:
        self.settings, self.market = settings, market
        self._store: HistoryStore | None = None
        self._next_try = 0.0

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def store(self) -> HistoryStore | None:
        if self._store is None and time.monotonic() >= self._next_try:
            try:
                self._store = await asyncio.to_thread(open_store, self.settings, True)
            except HistoryError as exc:
                log.debug("history store not available: %s", exc)
                self._next_try = time.monotonic() + RETRY_OPEN_S
        return self._store

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``fn`` in a thread; None (and Redis alone for a while) if the database fails."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except UsageError:
            raise
        except Exception as exc:  # the database went away: Redis alone until it is back
            log.warning("history store read failed (%s: %s); answering from Redis", exc.__class__.__name__, exc)
            self.close()
            self._next_try = time.monotonic() + RETRY_OPEN_S
            return None

    # --- ticks ---------------------------------------------------------------------------

    async def history(
        self,
        symbol: str,
        limit: int,
        since: str | None = None,
        start: str | None = None,
        end: str | None = None,
        after: str | None = None,
    ) -> tuple[list[PricePoint], str | None]:
        """The points and, when the page is full and ranged, the cursor of the next page."""
        sym = await self.market.known(symbol)
        check_page(limit)
        lo, hi = time_range(since, start, end)
        cursor = parse_cursor(after) if after is not None else None
        window = await self.market.history(sym, min(self.settings.history_limit, MAX_PAGE))
        store = await self.store()
        if lo is None and hi is None and cursor is None:
            if len(window) >= limit or store is None:
                return window[-limit:], None
            rows = await self._call(store.ticks, sym, limit=limit, latest=True)
            if rows is None:
                return window[-limit:], None
            return _merge_points([r.point() for r in rows], window)[-limit:], None

        def wanted(p: PricePoint) -> bool:
            return (
                (lo is None or p.ts >= lo) and (hi is None or p.ts < hi) and (cursor is None or (p.ts, p.seq) > cursor)
            )

        recent = [p for p in window if wanted(p)]
        first = (window[0].ts, window[0].seq) if window else None
        starts_inside = first is not None and (
            (lo is not None and lo > first[0]) or (cursor is not None and cursor >= first)
        )
        points = recent[:limit]
        if not starts_inside and store is not None:
            rows = await self._call(store.ticks, sym, start=lo, end=hi, after=cursor, limit=limit)
            if rows is not None:
                points = _merge_points([r.point() for r in rows], recent)[:limit]
        return points, (cursor_of(points[-1]) if len(points) == limit else None)

    # --- candles -------------------------------------------------------------------------

    def check_interval(self, interval: str) -> str:
        try:
            _iv_ns(interval)
        except ValueError as exc:  # not an interval at all: say which forms are
            raise UsageError(str(exc)) from None
        if interval in INTERVALS or interval in self.market.intervals:
            return interval
        kept = sorted(set(INTERVALS) | set(self.market.intervals), key=lambda iv: _iv_ns(iv))
        raise UsageError(f"no {interval} candles are kept", f"kept intervals: {', '.join(kept)}")

    async def candles(
        self,
        symbol: str,
        interval: str,
        limit: int,
        since: str | None = None,
        start: str | None = None,
        end: str | None = None,
        after: str | None = None,
    ) -> tuple[list[Candle], str | None]:
        sym = await self.market.known(symbol)
        iv = self.check_interval(interval)
        check_page(limit)
        lo, hi = time_range(since, start, end)
        if after is not None and not (after.isdigit() and len(after) <= 19):
            raise UsageError(f"bad cursor {after[:40]!r}", "use the start (ns) of the last candle of the previous page")
        cursor = int(after) if after is not None else None
        in_redis = iv in self.market.intervals
        window = await self.market.candles(sym, iv, MAX_PAGE) if in_redis else []
        store = await self.store() if iv in INTERVALS else None
        if lo is None and hi is None and cursor is None:
            if (in_redis and len(window) >= limit) or store is None:
                return window[-limit:], None
            rows = await self._call(store.candles, sym, iv, limit=limit, latest=True)
            return (_merge_candles(rows, window)[-limit:] if rows is not None else window[-limit:]), None

        def wanted(c: Candle) -> bool:
            return (
                (lo is None or c.start >= lo) and (hi is None or c.start < hi) and (cursor is None or c.start > cursor)
            )

        recent = [c for c in window if wanted(c)]
        first = window[0].start if window else None
        starts_inside = first is not None and (
            (lo is not None and lo > first) or (cursor is not None and cursor >= first)
        )
        out = recent[:limit]
        if not starts_inside and store is not None:
            rows = await self._call(store.candles, sym, iv, start=lo, end=hi, after=cursor, limit=limit)
            if rows is not None:
                out = _merge_candles(rows, recent)[:limit]
        return out, (str(out[-1].start) if len(out) == limit else None)


def _iv_ns(interval: str) -> int:
    from stockctl.marketdata.candles import parse_interval

    return parse_interval(interval)


def _merge_points(stored: list[PricePoint], recent: list[PricePoint]) -> list[PricePoint]:
    by_seq = {p.seq: p for p in stored}
    for p in recent:
        by_seq.setdefault(p.seq, p)
    return sorted(by_seq.values(), key=lambda p: (p.ts, p.seq))


def _merge_candles(stored: list[Candle], recent: list[Candle]) -> list[Candle]:
    """By bucket start; where both have a bucket, the one that has seen more ticks (Redis's
    newest bucket is ahead of the store's by up to a batch; the store's has late ticks)."""
    by_start = {c.start: c for c in stored}
    for c in recent:
        mine = by_start.get(c.start)
        if mine is None or c.count >= mine.count:
            by_start[c.start] = c
    return [by_start[s] for s in sorted(by_start)]
