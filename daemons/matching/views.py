"""matching's Redis views of stored events: fills, trades and order history, with a watermark.

The gateway's history endpoints read these lists; matching is their only writer. Each
user's fills, each market's trades and each user's finished orders are a list, oldest
first, trimmed to the last ``HISTORY_LIMIT``. One MULTI writes a batch's additions together
with ``VIEWS_SEQ_KEY``, the per-market event seq they reach, so after a crash the watermark
says exactly which stored events still lack their views: the restart writes those, once.

:meth:`RedisViews.record` retries through Redis outages until it succeeds, or until the
daemon stops (then the watermark, unchanged, leaves the work to the next start).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockctl.runtime.retry import backoff_sleep
from stockctl.runtime.status import StateLog
from stockctl.wire import names
from stockctl.wire.exchange import Accepted, Amended, Cancelled, Event, Rejected, Trade, Triggered

log = logging.getLogger("stockctl.matching")

HISTORY_LIMIT = 1_000  # fills / trades / finished orders kept per user or market in Redis


def event_market(ev: Event) -> str:
    """The market an event belongs to (account events: the pseudo-market ``ACCOUNTS``)."""
    return ev.market or names.ACCOUNTS_MARKET


class RedisViews:
    """Writes the views and keeps ``viewed``: market -> the last event seq they include."""

    def __init__(self, r: aioredis.Redis, stop: asyncio.Event) -> None:
        self.r, self.stop = r, stop
        self.viewed: dict[str, int] = {}
        self.state = StateLog(log, "Redis views")

    async def stored_watermarks(self) -> dict[str, int]:
        """The watermark in Redis (empty on a fresh exchange, or one written before there was one)."""
        return {k.decode(): int(v) for k, v in (await self.r.hgetall(names.VIEWS_SEQ_KEY)).items()}

    async def start_empty(self, markets: list[str]) -> None:
        """Write watermark 0 for markets with no events and no watermark yet.

        A market without a watermark is taken as fully viewed (its events were stored before
        the watermark existed); one written before its first event keeps a crash in that
        first batch, after its record is stored, from passing for complete.
        """
        if markets:
            await self.r.hset(names.VIEWS_SEQ_KEY, mapping=dict.fromkeys(markets, 0))

    def missing(self, event: Event) -> bool:
        """Whether ``event`` is past the views' watermark."""
        return event.seq > self.viewed.get(event_market(event), 0)

    @staticmethod
    async def _applied(pipe: Any, last: dict[str, int]) -> bool:
        """True if the watermark already covers these events: an earlier attempt was applied."""
        stored = await pipe.hmget(names.VIEWS_SEQ_KEY, list(last))
        return all(v is not None and int(v) >= seq for v, seq in zip(stored, last.values(), strict=True))

    async def record(self, events: list[tuple[Event, bytes]]) -> None:
        """Fills, trades and finished orders in Redis, for the gateway's history endpoints.

        ``events`` come with their encoding (as stored in ``EX_EVENTS``), which the lists hold.
        """
        if not events:
            return
        last: dict[str, int] = {}
        for ev, _ in events:
            last[event_market(ev)] = ev.seq
        # One RPUSH and one LTRIM per list for the whole batch, values in event order: far
        # fewer commands to pack and run than two per event and per side.
        pushes: dict[str, list[bytes]] = {}
        for ev, data in events:
            if isinstance(ev, Trade):
                for user in {ev.maker_user, ev.taker_user}:
                    pushes.setdefault(names.fills_key(user), []).append(data)
                pushes.setdefault(names.trades_key(ev.market), []).append(data)
            elif isinstance(ev, Accepted | Rejected | Cancelled | Amended | Triggered):
                # An order's life for `orders --all`: accepted, then cancelled or filled.
                pushes.setdefault(names.orders_key(ev.user), []).append(data)
        attempt = 0
        while True:
            # Built afresh each attempt: redis-py empties a pipeline when execute() fails.
            try:
                async with self.r.pipeline(transaction=True) as pipe:
                    # WATCH first: redis-py then never re-sends the transaction by itself after a
                    # lost reply (EXEC may have been applied: a Redis restart right after it), and
                    # on a retry the watermark, written in the same transaction, says if it was.
                    await pipe.watch(names.VIEWS_SEQ_KEY)
                    if attempt and await self._applied(pipe, last):
                        self.viewed.update(last)
                        self.state.set("ok")
                        return
                    pipe.multi()
                    for key, values in pushes.items():
                        pipe.rpush(key, *values)
                        pipe.ltrim(key, -HISTORY_LIMIT, -1)
                    pipe.hset(names.VIEWS_SEQ_KEY, mapping=last)
                    await pipe.execute()
                    self.viewed.update(last)
                    self.state.set("ok")
                    return
            except RedisError as exc:
                self.state.set("failing", f"{exc}; retrying the fills/trades/orders views")
            if self.stop.is_set():
                # The watermark in Redis still says where views stop: the next start redoes them.
                log.error("shutting down with views not written; the next start writes them from EX_EVENTS")
                return
            await backoff_sleep(attempt, self.stop)
            attempt += 1
