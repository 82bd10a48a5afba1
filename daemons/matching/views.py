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
from collections import deque
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
# two share a hash tag, so a cluster keeps them in one slot). ARGV: the history limit, the
# number of expectations, (market, seq this daemon last wrote) for each, then (market, event
# seq, value) for each value, in event order. A watermark below what this daemon wrote means
# the list was set back (a failover promoted a replica that had not received the last writes):
# nothing is written, and the reply {0, market, stored, ...} says from where to write again.
# Otherwise values at or below their market's watermark are already in the list (an earlier
# run, or this call sent twice) and are skipped; the reply is {1, values written}. The watermark
# moves once per market per call (one HSET of every market moved), not once per value.
RECORD_LIST = Lua("""
local expected = tonumber(ARGV[2])
local marks, behind = {}, {}
for i = 3, 2 + 2 * expected, 2 do
  local stored = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
  marks[ARGV[i]] = stored
  if stored < tonumber(ARGV[i + 1]) then
    behind[#behind + 1] = ARGV[i]
    behind[#behind + 1] = stored
  end
end
if #behind > 0 then return {0, unpack(behind)} end
local out, moved = {}, {}
for i = 3 + 2 * expected, #ARGV, 3 do
  local market, seq = ARGV[i], tonumber(ARGV[i + 1])
  if marks[market] == nil then marks[market] = tonumber(redis.call('HGET', KEYS[2], market) or '0') end
  if seq > marks[market] then
    out[#out + 1] = ARGV[i + 2]
    moved[market] = true
    marks[market] = seq
  end
end
local fields = {}
for market in pairs(moved) do
  fields[#fields + 1] = market
  fields[#fields + 1] = marks[market]
end
if #fields > 0 then redis.call('HSET', KEYS[2], unpack(fields)) end
local first = 1
while first <= #out do
  local upto = math.min(first + 999, #out)
  redis.call('RPUSH', KEYS[1], unpack(out, first, upto))
  first = upto + 1
end
if #out > 0 then redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1) end
return {1, #out}
""")

RECENT_EVENTS = 50_000
"""Events kept in memory to write again into a list that a Redis failover set back; the lost
writes are the primary's last moments (its replication lag), far fewer than this."""


def event_market(ev: Event) -> str:
    """The market an event belongs to (account events: the pseudo-market ``ACCOUNTS``)."""
    return ev.market or names.ACCOUNTS_MARKET


def lists_of(ev: Event) -> list[str]:
    """The view lists an event goes into."""
    if isinstance(ev, Trade):
        return [*(names.fills_key(user) for user in {ev.maker_user, ev.taker_user}), names.trades_key(ev.market)]
    if isinstance(ev, Accepted | Rejected | Cancelled | Amended | Triggered):
        return [names.orders_key(ev.user)]  # an order's life for `orders --all`: accepted, then done
    return []


class SetBack(RedisError):
    """A view list holds less than this daemon wrote to it; written again from memory."""


class RedisViews:
    """Writes the views and keeps ``viewed``: market -> the last event seq they include."""

    def __init__(self, r: aioredis.Redis, stop: asyncio.Event) -> None:
        self.r, self.stop = r, stop
        self.viewed: dict[str, int] = {}
        self.written: dict[str, dict[str, int]] = {}
        """Per list, market -> the last event seq this daemon wrote to it: what it must hold."""
        self.recent: deque[tuple[Event, bytes]] = deque(maxlen=RECENT_EVENTS)
        self.setbacks = 0
        """How many times a list was found set back and written again (matching's status shows it)."""
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
        self.recent.extend(events)
        # One script per list, all in one round trip: each pushes the values past its own list's
        # watermark, so a batch written part way (a crash between two lists, on different
        # cluster nodes) or sent twice writes every value exactly once when it is written again.
        pushes: dict[str, list[tuple[str, int, bytes]]] = {}
        for ev, data in events:
            market = event_market(ev)
            for key in lists_of(ev):
                pushes.setdefault(key, []).append((market, ev.seq, data))
        attempt = 0
        while True:
            try:
                await self._write(pushes)
                # Then the instance-wide watermark, a lower bound of the lists' own ones: where
                # a restart starts writing views again (the lists skip what they hold).
                await self.r.hset(names.VIEWS_SEQ_KEY, mapping=last)
                self.viewed.update(last)
                self.state.set("ok")
                return
            except SetBack:
                continue  # the lists' values are completed from memory: write them now
            except RedisError as exc:
                self.state.set("failing", f"{exc}; retrying the fills/trades/orders views")
            if self.stop.is_set():
                # The watermark in Redis still says where views stop: the next start redoes them.
                log.error("shutting down with views not written; the next start writes them from EX_EVENTS")
                return
            await backoff_sleep(attempt, self.stop)
            attempt += 1

    async def _write(self, pushes: dict[str, list[tuple[str, int, bytes]]]) -> None:
        calls: list[Call] = []
        for key, values in pushes.items():
            wrote = self.written.get(key, {})
            args: list[Any] = [HISTORY_LIMIT, len(wrote)]
            for market, seq in wrote.items():
                args += [market, seq]
            for value in values:
                args += value
            calls.append(Call(RECORD_LIST, [key, names.list_seq_key(key)], args))
        results = await run_scripts(self.r, calls)
        behind = False
        for (key, values), (ok, *detail) in zip(pushes.items(), results, strict=True):
            if ok:
                marks = self.written.setdefault(key, {})
                for market, seq, _ in values:
                    marks[market] = seq
                continue
            behind = True
            for market, stored in zip(detail[::2], detail[1::2], strict=True):
                self._refill(key, values, market.decode(), int(stored))
        if behind:
            raise SetBack("a view list was set back")

    def _refill(self, key: str, values: list[tuple[str, int, bytes]], market: str, stored: int) -> None:
        """Put back into ``values`` the events of ``market`` that ``key`` lost (after ``stored``)."""
        wrote = self.written[key].pop(market)
        lost = [
            (market, ev.seq, data)
            for ev, data in self.recent
            if event_market(ev) == market and stored < ev.seq <= wrote and key in lists_of(ev)
        ]
        oldest = next((ev.seq for ev, _ in self.recent if event_market(ev) == market), None)
        if oldest is None or oldest > stored + 1:
            log.error(
                "%s lost %s events %d..%d in a Redis failover and not all are in memory; "
                "the views may miss some until they are rebuilt",
                key,
                market,
                stored + 1,
                wrote,
            )
        log.warning("%s: back to %s seq %d (a Redis failover); writing %d events again", key, market, stored, len(lost))
        self.state.set("failing", f"{key} set back by a Redis failover; writing it again")
        self.setbacks += 1
        again = {(m, seq) for m, seq, _ in lost}
        values[:] = [*lost, *(v for v in values if (v[0], v[1]) not in again)]  # oldest first, as written
