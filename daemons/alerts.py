"""alerts: fires users' price alerts as quotes and SMA signals arrive.

It keeps every active alert in memory, indexed by symbol (``stockctl.alerts.AlertIndex``),
and listens to the processor's output: ``md.quote.>`` for above/below alerts and
``md.signal.>`` for cross-sma ones. The gateway announces added and removed alerts on
``alert.changed``; the daemon also re-reads the active set every ``RESYNC_S`` seconds in
case an announcement was lost.

Nothing is missed across its own restarts or NATS outages: whenever it takes on an alert
it has not evaluated yet (at start, after a reconnect, on an announcement), it replays the
symbol's stored history and signals from Redis that are newer than the alert. Firing is a
Lua script whose HDEL decides, so an alert fires exactly once even with several alerts
daemons running. A fired alert is moved to its user's bounded history and published on
``alert.fired`` for the gateways to deliver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import msgspec
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from redis.exceptions import RedisError

from stockctl.alerts.rules import Alert, AlertIndex, change_decoder, describe, encode, fired
from stockctl.alerts.store import AlertStore
from stockctl.marketdata.money import to_units
from stockctl.runtime.connections import open_nats, open_redis
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.retry import retry
from stockctl.runtime.status import StateLog, StatusFile
from stockctl.settings import Settings, mask_url
from stockctl.wire import names
from stockctl.wire.marketdata import point_decoder, quote_decoder, signal_decoder

log = logging.getLogger("stockctl.alerts")

RESYNC_S = 30.0
"""How often the active set is re-read from Redis (announcements are core NATS: at most once)."""

SIGNALS_REPLAYED = 100
"""Most recent stored signals per symbol looked at when catching up."""


class AlertWatcher:
    """The daemon's state: the index of active alerts, how it catches up, and how alerts fire."""

    def __init__(self, r: aioredis.Redis, nc: NATS, status: StatusFile) -> None:
        self.r, self.nc, self.status = r, nc, status
        self.store = AlertStore(r)
        self.index = AlertIndex()

    # --- loading and catching up --------------------------------------------------------

    async def resync(self, catch_up_all: bool) -> None:
        """Re-read the active set; catch up the alerts not seen before (or every one)."""
        new = self.index.replace(await self.store.active())
        symbols = self.index.symbols() if catch_up_all else {self.index.alerts[i].symbol for i in new}
        for symbol in sorted(symbols):
            await self.catch_up(symbol)
        self.status.info["alerts"] = len(self.index)

    async def added(self, alert_id: int) -> None:
        alert = await self.store.get(alert_id)
        if alert is None or alert_id in self.index:
            return  # already removed or fired, or known
        self.index.add(alert)
        await self.catch_up(alert.symbol)
        self.status.info["alerts"] = len(self.index)

    def removed(self, alert_id: int) -> None:
        self.index.discard(alert_id)
        self.status.info["alerts"] = len(self.index)

    async def catch_up(self, symbol: str) -> None:
        """Evaluate the symbol's stored history and signals, oldest first (only newer than each alert counts)."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.lrange(names.history_key(symbol), 0, -1)
            pipe.lrange(names.signals_key(symbol), -SIGNALS_REPLAYED, -1)
            points, signals = await pipe.execute()
        for raw in points:
            if not self.index.watches(symbol):
                return
            p = point_decoder.decode(raw)
            await self.on_price(symbol, p.price, p.ts, p.seq)
        for raw in signals:
            sig = signal_decoder.decode(raw)
            await self.on_signal(symbol, sig.side, sig.price, sig.ts, sig.seq)

    # --- evaluation ---------------------------------------------------------------------

    async def on_price(self, symbol: str, price: str, ts: int, seq: int) -> None:
        for alert in self.index.on_price(symbol, to_units(price), ts, seq):
            await self._fire(alert, price, seq)

    async def on_signal(self, symbol: str, side: str, price: str, ts: int, seq: int) -> None:
        for alert in self.index.on_signal(symbol, side, ts, seq):
            await self._fire(alert, price, seq, side)  # type: ignore[arg-type]

    async def _fire(self, alert: Alert, price: str, seq: int, signal: str | None = None) -> None:
        done = fired(alert, price, seq, time.time_ns(), signal)  # type: ignore[arg-type]
        won = await self.store.fire(done)  # a RedisError leaves it in the index: retried after a resync
        self.index.discard(alert.id)
        self.status.info["alerts"] = len(self.index)
        if not won:
            return  # removed by its user, or fired by another alerts daemon
        self.status.incr("fired")
        log.info("alert %d of %s fired: %s at %s", alert.id, alert.user, describe(alert), price)
        try:
            await self.nc.publish(names.ALERT_FIRED_SUBJECT, encode(done))
        except Exception as exc:  # recorded in the user's history either way
            log.warning("could not publish fired alert %d: %s", alert.id, exc.__class__.__name__)

    async def handle(self, kind: str, msg: Msg) -> None:
        """One message from NATS, in arrival order."""
        if kind == "quote":
            self.status.incr("quotes")
            if not self.index.watches(names.symbol_of(msg.subject)):
                return  # most quotes: no alert on the symbol, not even decoded
            q = quote_decoder.decode(msg.data)
            await self.on_price(q.symbol, q.price, q.ts, q.seq)
        elif kind == "signal":
            self.status.incr("signals")
            if not self.index.watches(names.symbol_of(msg.subject)):
                return
            sig = signal_decoder.decode(msg.data)
            await self.on_signal(sig.symbol, sig.side, sig.price, sig.ts, sig.seq)
        else:
            change = change_decoder.decode(msg.data)
            if change.op == "add":
                await self.added(change.id)
            else:
                self.removed(change.id)


class Alerts(Daemon):
    """Subscribes, loads and catches up every active alert, then evaluates messages in order."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.resync_all = asyncio.Event()  # set after a NATS reconnect: quotes may have been missed
        self.inbox: asyncio.Queue[tuple[str, Msg]] = asyncio.Queue()
        self.redis_state = StateLog(log, f"Redis {mask_url(settings.effective_redis_url)}")
        self.next_resync = 0.0
        self.watcher: AlertWatcher | None = None

    async def startup(self, stack: AsyncExitStack) -> None:
        r = await open_redis(stack, self.ops, self.stop, log)
        nc = await open_nats(stack, self.ops, self.stop, log, on_reconnect=self.resync_all.set)
        watcher = self.watcher = AlertWatcher(r, nc, self.status)
        self.ops.gauge("alerts_active", lambda: len(watcher.index))

        # Subscribe before loading: what arrives meanwhile waits in the queue, so nothing
        # falls between the load and the first live message.
        def enqueue(kind: str) -> Callable[[Msg], Awaitable[None]]:
            async def cb(msg: Msg) -> None:
                self.inbox.put_nowait((kind, msg))

            return cb

        await nc.subscribe(names.QUOTE_SUBJECTS, cb=enqueue("quote"))
        await nc.subscribe(names.SIGNAL_SUBJECTS, cb=enqueue("signal"))
        await nc.subscribe(names.ALERT_CHANGED_SUBJECT, cb=enqueue("change"))
        await nc.flush()
        await retry(lambda: watcher.resync(catch_up_all=True), stop=self.stop, what="loading alerts", logger=log)
        log.info("watching %d active alerts on %d symbols", len(watcher.index), len(watcher.index.symbols()))
        self.status.info.update({"alerts": len(watcher.index)})
        self.next_resync = time.monotonic() + RESYNC_S

    async def main_loop(self) -> None:
        while not self.stop.is_set():
            await retry(self.step, stop=self.stop, retry_on=RedisError, on_error=self._redis_failed)
            self.redis_state.set("ok")

    async def step(self) -> None:
        """A resync if one is due, then the next message if one comes within half a second."""
        assert self.watcher is not None
        if self.resync_all.is_set() or time.monotonic() >= self.next_resync:
            everything = self.resync_all.is_set()
            self.resync_all.clear()
            await self.watcher.resync(catch_up_all=everything)
            self.next_resync = time.monotonic() + RESYNC_S
        try:
            kind, msg = await asyncio.wait_for(self.inbox.get(), 0.5)
        except TimeoutError:
            return
        try:
            await self.watcher.handle(kind, msg)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.error("dropping malformed %s on %s: %s", kind, msg.subject, exc)
            self.status.incr("malformed")

    def _redis_failed(self, exc: Exception, _attempt: int) -> None:
        # What was being evaluated is still in Redis history: a full catch-up finds it.
        self.redis_state.set("failing", f"{exc.__class__.__name__}: {exc}; retrying")
        self.status.incr("redis_errors")
        self.resync_all.set()


DAEMON = Alerts

if __name__ == "__main__":
    main("alerts", Alerts)
