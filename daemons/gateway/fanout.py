"""WebSocket fan-out: each NATS message to every client subscribed to its channel, slow ones apart.

A :class:`Hub` maps channels to clients and holds one NATS subscription per subject while anyone
listens; a subscription first gets a snapshot of the channel. Fan-out is built for many clients
on few cores: each NATS message becomes one frame (the payload is spliced in, never re-encoded)
written synchronously to every client whose socket keeps up. A :class:`Client` that falls behind
gets a private backlog in which quotes and candles are conflated to the latest per channel; one
whose backlog overflows is closed (1013). Slow clients never delay the others.

Each NATS message is routed once per client and channel: ``orders`` (``ex.event.>``) and
``trades:MKT`` (``ex.event.MKT``) see the same events through two subscriptions, so each
subscription serves its own channel only. A message there is a record of several events
(:func:`stockctl.wire.exchange.split_record`); each event still becomes one frame of its own.
A user's ``orders`` and ``alerts`` carry only their own events
(:func:`daemons.gateway.views.own_view`); ``trades:MKT`` carries no users at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from websockets.asyncio.server import ServerConnection, broadcast

from daemons.gateway.exchange_api import ExchangeApi
from daemons.gateway.views import own_view
from daemons.gateway.ws_asgi import AsgiSocket
from stockctl.alerts.rules import alert_decoder
from stockctl.alerts.store import AlertStore
from stockctl.auth.tokens import Claims
from stockctl.errors import NotFound, StockctlError, UsageError
from stockctl.marketdata.store import MarketStore, check_symbol
from stockctl.runtime.status import StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import Trade, event_decoder, split_record
from stockctl.wire.gateway import CLOSE_SLOW, encode, frame, public_trade_decoder

log = logging.getLogger("stockctl.gateway")

SNAPSHOT_LIMIT = 50  # signals / candles sent with a subscription


class Client:
    """One WebSocket connection: its subscriptions and its backlog when it falls behind."""

    _ids = itertools.count()

    def __init__(self, ws: ServerConnection | AsgiSocket, settings: Settings) -> None:
        self.ws = ws
        self.claims: Claims | None = None
        self.channels: set[str] = set()
        self.backlog: dict[str, bytes] = {}
        self.wake = asyncio.Event()
        self.stalled_since: float | None = None
        self.closing = False
        self.queue_limit = settings.ws_queue_size
        self.high_water = 256 * 1024
        self.tokens = settings.ws_max_messages_per_s * 2
        self.rate = settings.ws_max_messages_per_s
        self.last_refill = time.monotonic()
        self.violations = 0

    @property
    def email(self) -> str:
        return self.claims.email if self.claims else "-"

    def fast(self) -> bool:
        """True when a frame can be written now without queueing behind others."""
        if self.backlog or self.closing:
            return False
        transport = self.ws.transport
        return transport is not None and transport.get_write_buffer_size() < self.high_water

    def offer(self, key: str, data: bytes) -> None:
        """Queue a frame; a key that is already queued (a conflatable channel) is replaced."""
        if self.closing:
            return
        if self.fast():
            broadcast((self.ws,), data, text=True)  # type: ignore[arg-type]  # fast(): a websockets socket
            return
        if key in self.backlog:
            del self.backlog[key]  # conflate: keep only the latest, at the back
        self.backlog[key] = data
        if self.stalled_since is None:
            self.stalled_since = time.monotonic()
        if len(self.backlog) > self.queue_limit:
            self.close_later(CLOSE_SLOW, "client too slow: outgoing queue full")
        self.wake.set()

    _unique = itertools.count()

    def send_now(self, payload: dict[str, Any]) -> None:
        """A reply or error that must not be conflated."""
        self.offer(f"#{next(self._unique)}", encode(payload))

    def close_later(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.backlog.clear()
            log.info("closing client %s (%s): %s", self.email, code, reason)
            asyncio.get_running_loop().create_task(self.ws.close(code, reason))

    async def write_backlog(self) -> None:
        """Drain the backlog with backpressure (``send`` waits while the socket is full)."""
        while not self.closing:
            await self.wake.wait()
            self.wake.clear()
            while self.backlog and not self.closing:
                key = next(iter(self.backlog))
                data = self.backlog.pop(key)
                await self.ws.send(data, text=True)
                self.stalled_since = time.monotonic() if self.backlog else None

    def allow(self) -> bool:
        """Token bucket on client messages: ``ws_max_messages_per_s``, burst of twice that."""
        now = time.monotonic()
        self.tokens = min(self.rate * 2, self.tokens + (now - self.last_refill) * self.rate)
        self.last_refill = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


CONFLATED = ("quotes", "candles")


@dataclass(frozen=True)
class Channel:
    """A parsed channel name: ``quotes:AAPL``, ``candles:AAPL:1m``, ``book:TATA_INR``, ``orders``."""

    name: str
    kind: str
    subject: str
    symbol: str = ""
    interval: str = ""


class Hub:
    """Channels -> clients, with one NATS subscription per channel while anyone listens."""

    def __init__(
        self, nc: NATS, store: MarketStore, exchange: ExchangeApi, status: StatusFile, alerts: AlertStore | None = None
    ) -> None:
        self.nc, self.store, self.exchange, self.status, self.alerts = nc, store, exchange, status, alerts
        self.members: dict[str, set[Client]] = {}
        self.nats_subs: dict[str, Any] = {}
        self.clients: set[Client] = set()
        self.by_user: dict[str, set[Client]] = {}  # subscribers of their own `orders` channel
        self.alert_users: dict[str, set[Client]] = {}  # subscribers of their own `alerts` channel

    def parse(self, channel: str) -> Channel:
        """Validate a channel name; raises UsageError naming the accepted forms."""
        parts = channel.split(":")
        kind = parts[0]
        if kind in ("quotes", "signals") and len(parts) == 2:
            sym = check_symbol(parts[1])
            subject = names.quote_subject(sym) if kind == "quotes" else names.signal_subject(sym)
            return Channel(f"{kind}:{sym}", kind, subject, sym)
        if kind == "candles" and len(parts) == 3:
            sym = check_symbol(parts[1])
            iv = self.store.check_interval(parts[2])
            return Channel(f"candles:{sym}:{iv}", kind, names.candle_subject(sym, iv), sym, iv)
        if kind in ("book", "trades") and len(parts) == 2:
            mkt = check_symbol(parts[1])
            subject = names.book_subject(mkt) if kind == "book" else names.event_subject(mkt)
            return Channel(f"{kind}:{mkt}", kind, subject, mkt)
        if channel == "orders":
            return Channel("orders", "orders", names.EVENT_SUBJECTS)
        if channel == "alerts":
            return Channel("alerts", "alerts", names.ALERT_FIRED_SUBJECT)
        raise UsageError(
            f"unknown channel {channel[:60]!r}",
            "channels: quotes:SYM, signals:SYM, candles:SYM:INTERVAL, book:MKT, trades:MKT, orders, alerts",
        )

    async def subscribe(self, client: Client, channel: str) -> None:
        ch = self.parse(channel)
        if ch.name in client.channels:
            return
        has_data = True
        if ch.kind in ("book", "trades"):
            await self.exchange.known_market(ch.symbol)
        elif ch.kind not in ("orders", "alerts"):
            has_data = await self._known_symbol(ch.symbol)
        client.channels.add(ch.name)
        self.members.setdefault(ch.name, set()).add(client)
        if ch.kind == "orders":
            self.by_user.setdefault(client.email, set()).add(client)
        elif ch.kind == "alerts":
            self.alert_users.setdefault(client.email, set()).add(client)
        if ch.subject not in self.nats_subs:
            self.nats_subs[ch.subject] = await self.nc.subscribe(ch.subject, cb=self._fan_out(ch))
        if has_data:
            await self._snapshot(client, ch)

    async def _known_symbol(self, symbol: str) -> bool:
        """Whether ``symbol`` has market data yet; NotFound when it is neither priced nor listed.

        A listed exchange market has no quote until its first trade, and a bot that subscribes
        to its quotes at start must not race that trade: it is subscribed with no snapshot, and
        its first quote arrives as an update.
        """
        try:
            await self.store.known(symbol)
        except NotFound:
            with contextlib.suppress(StockctlError):  # matching down: the symbol's own error
                if check_symbol(symbol) in await self.exchange.all_markets():
                    return False
            raise
        return True

    async def _snapshot(self, client: Client, ch: Channel) -> None:
        if ch.kind == "quotes":
            data = encode(await self.store.quote(ch.symbol))
        elif ch.kind == "signals":
            data = encode(await self.store.signals(ch.symbol, SNAPSHOT_LIMIT))
        elif ch.kind == "candles":
            data = encode(await self.store.candles(ch.symbol, ch.interval, SNAPSHOT_LIMIT))
        elif ch.kind == "book":
            data = await self.exchange.query("book", {"market": ch.symbol, "depth": 20})
        elif ch.kind == "trades":
            data = encode(await self.exchange.recent_trades(ch.symbol, SNAPSHOT_LIMIT))
        elif ch.kind == "alerts":
            assert self.alerts is not None, "the gateway's run() gives the hub its alert store"
            data = encode(await self.alerts.listing(client.email))
        else:
            data = await self.exchange.query("orders", {"user": client.email})
        client.offer(f"#snap:{ch.name}", frame("snapshot", ch.name, data))

    async def unsubscribe(self, client: Client, channel: str) -> None:
        ch = self.parse(channel)
        client.channels.discard(ch.name)
        if ch.kind in ("orders", "alerts"):
            users = self.by_user if ch.kind == "orders" else self.alert_users
            mine = users.get(client.email)
            if mine is not None:
                mine.discard(client)
                if not mine:
                    del users[client.email]
        members = self.members.get(ch.name)
        if members is not None:
            members.discard(client)
            if not members:
                del self.members[ch.name]
                # `trades:MKT` and `orders` may share a subject with another channel.
                if not any(self.parse(c).subject == ch.subject for c in self.members):
                    sub = self.nats_subs.pop(ch.subject, None)
                    if sub is not None:
                        with contextlib.suppress(Exception):
                            await sub.unsubscribe()

    async def drop(self, client: Client) -> None:
        for channel in list(client.channels):
            with contextlib.suppress(StockctlError):
                await self.unsubscribe(client, channel)
        self.clients.discard(client)

    def _send(self, members: set[Client], key: str | None, data: bytes) -> None:
        """One frame to many clients: direct writes for those keeping up, backlog for the rest."""
        fast = []
        for client in members:
            if client.fast():
                fast.append(client.ws)  # type: ignore[arg-type]  # fast(): a websockets socket
            else:
                client.offer(key or f"#{next(Client._unique)}", data)
        if fast:
            broadcast(fast, data, text=True)
        self.status.incr("frames", len(members))

    def _fan_out(self, ch: Channel) -> Callable[[Msg], Any]:
        # `orders` listens on ex.event.> and `trades:MKT` on ex.event.MKT, so NATS hands an
        # event to both subscriptions: each callback serves its own channel only, or every
        # event would be routed twice (once per subscription).
        if ch.kind == "orders":
            return self._route_own_events
        if ch.kind == "trades":
            return self._route_public_trades
        if ch.kind == "alerts":
            return self._route_alerts
        kind_name = {"quotes": "quote", "signals": "signal", "candles": "candle", "book": "book"}[ch.kind]
        conflate = ch.kind in CONFLATED

        async def deliver(msg: Msg) -> None:
            members = self.members.get(ch.name)
            if members:
                self._send(members, ch.name if conflate else None, frame(kind_name, ch.name, msg.data))

        return deliver

    async def _route_public_trades(self, msg: Msg) -> None:
        """Trades of ``ex.event.MKT`` to ``trades:MKT``, with no users, order ids or fees."""
        data = msg.data
        if b'{"event":"trade"' not in data:
            return
        market = names.symbol_of(msg.subject)
        members = self.members.get(f"trades:{market}")
        if not members:
            return
        channel = f"trades:{market}"
        for event in split_record(data):
            if event.startswith(b'{"event":"trade"'):
                public = encode(public_trade_decoder.decode(event))
                self._send(members, None, frame("trade", channel, public))

    async def _route_own_events(self, msg: Msg) -> None:
        """Each user's own events of ``ex.event.>`` to their ``orders`` channel."""
        if not self.by_user:
            return
        for data in split_record(msg.data):
            ev = event_decoder.decode(data)
            if isinstance(ev, Trade):
                doc = msgspec.json.decode(data)
                for user in {ev.maker_user, ev.taker_user}:
                    mine = self.by_user.get(user)
                    if mine:  # each side sees its own fill, not who was on the other side
                        self._send(mine, None, frame("order_event", "orders", encode(own_view(doc, user))))
                continue
            mine = self.by_user.get(ev.user)
            if mine:
                self._send(mine, None, frame("order_event", "orders", data))

    async def _route_alerts(self, msg: Msg) -> None:
        """A fired alert goes to its own user's ``alerts`` channel only."""
        mine = self.alert_users.get(alert_decoder.decode(msg.data).user)
        if mine:
            self._send(mine, None, frame("alert", "alerts", msg.data))
