"""matching's Redis views of stored events: fills, trades and order history, with a watermark.

The gateway's history endpoints read these lists; matching is their only writer. Each
user's fills, each market's trades and each user's finished orders are a list, oldest
first, trimmed to the last ``HISTORY_LIMIT``, with a watermark hash beside it in the same
cluster slot (``<list>:seq``: market -> the last event seq the list holds). One Lua script per
list (``RECORD_LIST``, all of a batch's in one round trip) appends the values past that
watermark and moves it, atomically. Then ``VIEWS_SEQ_KEY`` takes the batch's last seq per
market: a lower bound of the lists' watermarks, from which a restart writes views again.
So after a crash every stored event reaches every list once: what a list already holds its
watermark skips, and a script resent after a lost reply is a no-op.

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
from stockctl.runtime.scripts import Call, Lua, run_scripts
from stockctl.runtime.status import StateLog
from stockctl.wire import names
from stockctl.wire.exchange import Accepted, Amended, Cancelled, Event, Rejected, Trade, Triggered

log = logging.getLogger("stockctl.matching")

HISTORY_LIMIT = 1_000  # fills / trades / finished orders kept per user or market in Redis


# KEYS: one view list, then its watermark hash (market -> last event seq the list holds; the
# two share a hash tag, so a cluster keeps them in one slot). ARGV: the history limit, then
# (market, event seq, value) for each value, in event order. Values at or below their market's
# watermark are already in the list (an earlier run, or this call sent twice) and are skipped.
RECORD_LIST = Lua("""
local marks, out = {}, {}
for i = 2, #ARGV, 3 do
  local market, seq = ARGV[i], tonumber(ARGV[i + 1])
  if marks[market] == nil then marks[market] = tonumber(redis.call('HGET', KEYS[2], market) or '0') end
  if seq > marks[market] then
    out[#out + 1] = ARGV[i + 2]
    marks[market] = seq
    redis.call('HSET', KEYS[2], market, seq)
  end
end
local first = 1
while first <= #out do
  local upto = math.min(first + 999, #out)
  redis.call('RPUSH', KEYS[1], unpack(out, first, upto))
  first = upto + 1
end
if #out > 0 then redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1) end
return #out
""")


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

    async def record(self, events: list[tuple[Event, bytes]]) -> None:
        """Fills, trades and finished orders in Redis, for the gateway's history endpoints.

        ``events`` come with their encoding (as stored in ``EX_EVENTS``), which the lists hold.
        """
        if not events:
            return
        last: dict[str, int] = {}
        for ev, _ in events:
            last[event_market(ev)] = ev.seq
        # One script per list, all in one round trip: each pushes the values past its own list's
        # watermark, so a batch written part way (a crash between two lists, on different
        # cluster nodes) or sent twice writes every value exactly once when it is written again.
        pushes: dict[str, list[Any]] = {}
        for ev, data in events:
            market = event_market(ev)
            lists: list[str] = []
            if isinstance(ev, Trade):
                lists += [names.fills_key(user) for user in {ev.maker_user, ev.taker_user}]
                lists.append(names.trades_key(ev.market))
            elif isinstance(ev, Accepted | Rejected | Cancelled | Amended | Triggered):
                # An order's life for `orders --all`: accepted, then cancelled or filled.
                lists.append(names.orders_key(ev.user))
            for key in lists:
                pushes.setdefault(key, [HISTORY_LIMIT]).extend((market, ev.seq, data))
        calls = [Call(RECORD_LIST, [key, names.list_seq_key(key)], args) for key, args in pushes.items()]
        attempt = 0
        while True:
            try:
                await run_scripts(self.r, calls)
                # Then the instance-wide watermark, a lower bound of the lists' own ones: where
                # a restart starts writing views again (the lists skip what they hold).
                await self.r.hset(names.VIEWS_SEQ_KEY, mapping=last)
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
