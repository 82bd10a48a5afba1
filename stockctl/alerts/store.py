"""Price alerts in Redis: the gateway adds, lists and removes them; the alerts daemon fires them.

Each change is one Lua script, so it is atomic: the per-user limit cannot be raced past,
a removal and a firing cannot both win, and of two alerts daemons that see the same tick
exactly one fires (the one whose HDEL removed the alert from the active hash).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from stockctl.alerts.rules import (
    FIRED_KEPT,
    Alert,
    AlertAdded,
    AlertChange,
    AlertIn,
    AlertList,
    alert_decoder,
    already_met,
    check_distance,
    describe,
    encode,
    parse_request,
)
from stockctl.errors import NotFound, UsageError
from stockctl.wire import names

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from stockctl.marketdata.store import MarketStore

log = logging.getLogger("stockctl.alerts")

Publish = Callable[[str, bytes], Awaitable[Any]]

# KEYS: active hash, user's id set. ARGV: id, alert JSON, limit.
ADD = """
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: active hash, user's id set. ARGV: id. The alert JSON, or nil if it is not the user's active alert.
REMOVE = """
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then return false end
local doc = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return doc
"""

# KEYS: active hash, user's id set, user's fired list. ARGV: id, fired alert JSON, kept.
# Whoever's HDEL removes the alert fires it; everyone else gets 0.
FIRE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
return 1
"""


class TooManyAlerts(UsageError):
    """The user has as many active alerts as allowed."""


class AlertStore:
    """Async access to alerts in Redis (gateway and alerts daemon)."""

    def __init__(
        self, r: aioredis.Redis, limit: int = 100, fired_kept: int = FIRED_KEPT, publish: Publish | None = None
    ) -> None:
        self.r = r
        self.limit = limit
        self.fired_kept = fired_kept
        self.publish = publish
        self._add = r.register_script(ADD)
        self._remove = r.register_script(REMOVE)
        self._fire = r.register_script(FIRE)

    # --- gateway side -------------------------------------------------------------------

    async def add(self, user: str, req: AlertIn, market: MarketStore) -> AlertAdded:
        """Validate and store an alert; UsageError, NotFound or TooManyAlerts say why not."""
        spec = parse_request(req)
        quote = await market.quote(spec.symbol)  # NotFound listing the known symbols
        check_distance(spec, quote.price)
        alert_id = int(await self.r.incr(names.ALERT_IDS_KEY))
        alert = Alert(
            id=alert_id,
            user=user,
            symbol=spec.symbol,
            condition=spec.condition,
            created=time.time_ns(),
            threshold=spec.threshold,
            side=spec.side,
            after_seq=quote.seq,
            after_ts=quote.ts,
        )
        keys = [names.ALERTS_ACTIVE_KEY, names.user_alerts_key(user)]
        if not await self._add(keys=keys, args=[alert_id, encode(alert), self.limit]):
            raise TooManyAlerts(
                f"you have {self.limit} active alerts, the most allowed", "remove one with `stockctl alert rm ID`"
            )
        await self._notify(AlertChange("add", alert_id, user))
        note = None
        if already_met(spec, quote.price):
            note = f"{spec.symbol} is at {quote.price} already: {describe(spec)} fires on the next tick"
        return AlertAdded(alert, quote.price, note)

    async def listing(self, user: str) -> AlertList:
        """The user's active alerts by id and their recently fired ones, oldest first."""
        ids = await self.r.smembers(names.user_alerts_key(user))
        active: list[Alert] = []
        if ids:
            raws = await self.r.hmget(names.ALERTS_ACTIVE_KEY, sorted(ids, key=int))
            active = [alert_decoder.decode(raw) for raw in raws if raw]
        fired = [alert_decoder.decode(raw) for raw in await self.r.lrange(names.fired_alerts_key(user), 0, -1)]
        return AlertList(sorted(active, key=lambda a: a.id), fired)

    async def remove(self, user: str, alert_id: int) -> Alert:
        """Remove one of the user's active alerts; NotFound for anyone else's, an unknown or a fired one."""
        raw = await self._remove(keys=[names.ALERTS_ACTIVE_KEY, names.user_alerts_key(user)], args=[alert_id])
        if raw is None:
            fired = await self.r.lrange(names.fired_alerts_key(user), 0, -1)
            if any(alert_decoder.decode(f).id == alert_id for f in fired):
                raise NotFound(f"alert {alert_id} has already fired", "see `stockctl alert list --all`")
            raise NotFound(f"no alert {alert_id}", "see `stockctl alert list`")
        await self._notify(AlertChange("rm", alert_id, user))
        return alert_decoder.decode(raw)

    async def _notify(self, change: AlertChange) -> None:
        # Best effort: alerts daemons also re-read the active set periodically and catch up
        # from stored history, so a lost notification only delays an alert, never loses it.
        if self.publish is None:
            return
        try:
            await self.publish(names.ALERT_CHANGED_SUBJECT, encode(change))
        except Exception as exc:
            log.warning("could not announce alert %s %d: %s", change.op, change.id, exc.__class__.__name__)

    # --- alerts daemon side ---------------------------------------------------------------

    async def active(self) -> list[Alert]:
        """Every user's active alerts."""
        raw = await self.r.hgetall(names.ALERTS_ACTIVE_KEY)
        return [alert_decoder.decode(v) for v in raw.values()]

    async def get(self, alert_id: int) -> Alert | None:
        raw = await self.r.hget(names.ALERTS_ACTIVE_KEY, alert_id)
        return alert_decoder.decode(raw) if raw else None

    async def fire(self, alert: Alert) -> bool:
        """Record ``alert`` (already marked fired) if it is still active; True for exactly one caller."""
        keys = [names.ALERTS_ACTIVE_KEY, names.user_alerts_key(alert.user), names.fired_alerts_key(alert.user)]
        return bool(await self._fire(keys=keys, args=[alert.id, encode(alert), self.fired_kept]))
