"""matching's Redis views of stored events: fills, trades and order history, with a watermark.

The gateway's history endpoints read these lists; matching is their only writer. Each
user's fills, each market's trades and each user's finished orders are a list, oldest
first, trimmed to the last ``HISTORY_LIMIT``. One Lua script (``RECORD_SCRIPT``: atomic, one
round trip per batch) writes a batch's additions together with ``VIEWS_SEQ_KEY``, the
per-market event seq they reach, and writes nothing if that watermark already covers them.
So after a crash the watermark says exactly which stored events still lack their views (the
restart writes those, once), and a script resent after a lost reply is a no-op.

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


# KEYS: the watermark hash, then each list. ARGV: the history limit, the number of markets,
# (market, last seq) for each, then for each list the number of its values and the values.
# Nothing is written when every market's watermark already reaches its seq (applied before).
RECORD_SCRIPT = """
local limit = tonumber(ARGV[1])
local markets = tonumber(ARGV[2])
local applied = true
for i = 3, 2 + 2 * markets, 2 do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  if not stored or tonumber(stored) < tonumber(ARGV[i + 1]) then applied = false end
end
if applied then return 0 end
local at = 3 + 2 * markets
for k = 2, #KEYS do
  local n = tonumber(ARGV[at])
  local first = at + 1
  while first <= at + n do
    local upto = math.min(first + 999, at + n)
    redis.call('RPUSH', KEYS[k], unpack(ARGV, first, upto))
    first = upto + 1
  end
  redis.call('LTRIM', KEYS[k], -limit, -1)
  at = at + n + 1
end
for i = 3, 2 + 2 * markets, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
"""


def event_market(ev: Event) -> str:
    """The market an event belongs to (account events: the pseudo-market ``ACCOUNTS``)."""
    return ev.market or names.ACCOUNTS_MARKET


class RedisViews:
    """Writes the views and keeps ``viewed``: market -> the last event seq they include."""

    def __init__(self, r: aioredis.Redis, stop: asyncio.Event) -> None:
        self.r, self.stop = r, stop
        self.viewed: dict[str, int] = {}
        self._script = r.register_script(RECORD_SCRIPT)
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
        keys: list[str] = [names.VIEWS_SEQ_KEY, *pushes]
        args: list[Any] = [HISTORY_LIMIT, len(last)]
        for market, seq in last.items():
            args += [market, seq]
        for values in pushes.values():
            args.append(len(values))
            args += values
        attempt = 0
        while True:
            try:
                # One script, one round trip: atomic, and a no-op when the watermark already
                # covers these events, so a resend after a lost reply (by redis-py's own retry
                # or by this loop) never pushes anything twice.
                await self._script(keys=keys, args=args)
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
