"""gateway: the clients' door. REST over HTTP, live channels over WebSocket, JWT on both.

* HTTP (FastAPI on ``gateway_port``): market data under ``/api/v1``, the seed clients' doors
  (:mod:`daemons.gateway_seeds`, with their WebSocket at ``/ws`` on this port), and ``/auth/*``
  passed through to the auth daemon so a client needs one base URL. Market-data reads need
  no token with ``public_market_data``.
* WebSocket (``websockets`` on ``ws_port``, path ``/ws``): authenticate (header or first
  message), subscribe to channels, get a snapshot and then updates. With
  ``public_market_data`` a client without a token may subscribe to market-data channels only.

Fan-out is built for many clients on few cores: each NATS message becomes one frame
(the payload is spliced in, never re-encoded) written synchronously to every client
whose socket keeps up. A client that falls behind gets a private backlog in which
quotes and candles are conflated to the latest per channel; one that cannot keep up at
all is closed with a reason. Slow clients never delay the others.

Each NATS message is routed once per client and channel: ``orders`` (``ex.event.>``) and
``trades:MKT`` (``ex.event.MKT``) see the same events through two subscriptions, so each
subscription serves its own channel only.

A disabled account loses its open sockets (4403) at once: ``stockctl users disable``
announces it on ``auth.disabled``, and every ``disabled_check_s`` the gateway re-reads the
disabled set for the users it serves, in case an announcement was lost.

The client address passed to auth is the socket peer, or what a proxy named in
``trusted_proxies`` forwarded (:mod:`stockctl.proxies`); ``/auth/*`` paths that would leave
``/auth/`` once decoded are refused with 404.

The gateway holds no state of its own: any number of them serve the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import msgspec
import nats.errors
import nats.js.errors
import redis.asyncio as aioredis
import websockets
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import Histogram
from redis.exceptions import RedisError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from daemons.gateway import seeds as gateway_seeds
from stockctl.alerts.rules import alert_decoder, alert_in_decoder
from stockctl.alerts.store import AlertStore, TooManyAlerts
from stockctl.auth.proxies import PROXY_SECRET_HEADER, TrustedProxies, load_proxy_secret
from stockctl.auth.tokens import Claims, TokenError, TokenVerifier
from stockctl.errors import NotFound, StockctlError, UsageError
from stockctl.history.reads import HistoryReader
from stockctl.marketdata.store import MarketStore, check_symbol
from stockctl.runtime.connections import open_nats, open_redis
from stockctl.runtime.daemon import main, shutdown_event
from stockctl.runtime.http import BodyLimit, UvicornServer
from stockctl.runtime.logs import REQUEST_ID_HEADER, bound, new_request_id
from stockctl.runtime.ops import HttpMetrics, start_ops
from stockctl.runtime.process import HeapFreezer
from stockctl.runtime.retry import backoff_sleep
from stockctl.runtime.status import StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import Amend, Cancel, CancelAll, Fund, Place, Trade, event_decoder, expire_at_ns
from stockctl.wire.exchange import encode as ex_encode
from stockctl.wire.strictjson import duplicate_key

log = logging.getLogger("stockctl.gateway")

AUTH_TIMEOUT_S = 10.0
STALL_LIMIT_S = 10.0  # a client whose backlog has not moved for this long is closed
SNAPSHOT_LIMIT = 50  # signals / candles sent with a subscription

# Close codes: 4401 unauthorized, 4403 forbidden; 1008 policy (rate), 1013 try again later (too slow).
CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_POLICY, CLOSE_SLOW = 4401, 4403, 1008, 1013
CLOSE_TRY_LATER = 1013  # "try again later": a dependency is down, not the client's fault


# --- tokens -------------------------------------------------------------------------------


class _SymbolSegment(Convertor[str]):
    """A symbol or market in a path: anything, ``/`` (sent as ``%2F``) and control characters
    included, so that the symbol rule (stockctl.symbols) refuses it with its reason instead of the
    router answering a bare 404 (``path``'s ``.*`` stops at a newline)."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("symbol", _SymbolSegment())


class KeyRing:
    """The auth daemon's public keys, fetched at start and again when an unknown key appears."""

    def __init__(self, auth_url: str) -> None:
        self.auth_url = auth_url
        self.verifier: TokenVerifier | None = None
        self._last_fetch = 0.0

    async def load(self, stop: asyncio.Event) -> bool:
        attempt = 0
        while not stop.is_set():
            try:
                self.verifier = await TokenVerifier.fetch(self.auth_url)
                self._last_fetch = time.monotonic()
                return True
            except Exception as exc:  # auth not up yet: retry
                if attempt == 0:
                    log.warning("cannot fetch JWKS from %s (%s); retrying", self.auth_url, exc)
                await backoff_sleep(attempt, stop)
                attempt += 1
        return False

    async def verify(self, token: str) -> Claims:
        assert self.verifier is not None
        try:
            return self.verifier.verify(token)
        except TokenError as exc:
            # A rotated key: refetch at most every 10 s, so bad tokens cannot hammer auth.
            if "unknown key" not in exc.reason or time.monotonic() - self._last_fetch < 10:
                raise
        self._last_fetch = time.monotonic()
        with contextlib.suppress(Exception):
            self.verifier = await TokenVerifier.fetch(self.auth_url)
        return self.verifier.verify(token)


async def check_user(r: aioredis.Redis, keys: KeyRing, authorization: str | None) -> Claims:
    """Claims of a valid bearer token of an enabled user, else a 401/403 StockctlError."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token", "log in: `stockctl login EMAIL`")
    try:
        claims = await keys.verify(authorization[7:].strip())
    except TokenError as exc:
        raise Unauthorized(f"invalid token: {exc.reason}", "log in again: `stockctl login EMAIL`") from None
    if await r.sismember(names.DISABLED_KEY, claims.email):
        raise Forbidden("account disabled", "ask the operator to enable it")
    return claims


class Unauthorized(StockctlError):
    """No valid token."""


class Forbidden(StockctlError):
    """A valid token of a user who may not do this."""


# --- exchange -----------------------------------------------------------------------------

COID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # .fullmatch only: `$` would let "X\n" through


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    """An order as a client submits it (REST body or WebSocket ``place``)."""

    market: str
    side: str
    qty: str
    price: str | None = None
    type: str | None = None  # default: stop/stop_limit with a stop_price, limit with a price, else market
    tif: str = "gtc"
    post_only: bool = False
    client_order_id: str | None = None
    stop_price: str | None = None
    expire_at: str | int | None = None  # RFC 3339 or epoch milliseconds; with tif gtd (implies it)
    display_qty: str | None = None  # an iceberg: the most the book shows


order_in_decoder = msgspec.json.Decoder(OrderIn)


class AmendIn(msgspec.Struct, forbid_unknown_fields=True):
    """A change to an open order (REST PATCH body or WebSocket ``amend``): a new price, qty (the
    new total quantity, filled part included), or both; market optional (it is looked up)."""

    price: str | None = None
    qty: str | None = None
    market: str | None = None


amend_in_decoder = msgspec.json.Decoder(AmendIn)
ORDER_BODY_SPEC = {  # the body is decoded by msgspec, so FastAPI cannot describe it by itself
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": msgspec.json.schema(OrderIn)["$defs"]["OrderIn"]}},
    }
}


class ExchangeApi:
    """Commands to the matching daemon through JetStream; outcomes from its stored events."""

    def __init__(self, settings: Settings, nc: NATS, js: Any, r: aioredis.Redis) -> None:
        self.s, self.nc, self.js, self.r = settings, nc, js, r
        self.funded: set[str] = set()
        self.markets: dict[str, dict[str, Any]] = {}
        self._waiters: dict[str, asyncio.Future[bytes]] = {}
        self._prefix = ""
        self._ids = itertools.count(1)
        self.ack_seconds: Histogram | None = None  # order submit -> events stored and answered

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox()
        await self.nc.subscribe(self._prefix + ".*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._waiters.pop(msg.subject, None)
        if fut is not None and not fut.done():
            fut.set_result(msg.data)

    async def query(self, what: str, payload: dict[str, Any]) -> bytes:
        try:
            resp = await self.nc.request(names.query_subject(what), encode(payload), timeout=3)
        except Exception as exc:  # no responders or timeout: matching is down
            raise ExchangeUnavailable(
                f"the matching engine is not answering ({exc.__class__.__name__})", "try again in a moment"
            ) from None
        return resp.data

    async def all_markets(self) -> list[str]:
        if not self.markets:
            specs = msgspec.json.decode(await self.query("markets", {}))
            self.markets = {m["symbol"]: m for m in specs}
        return sorted(self.markets)

    async def known_market(self, market: str) -> str:
        mkt = check_symbol(market)
        if mkt not in await self.all_markets():
            raise NotFound(f"unknown market {mkt}", f"known markets: {', '.join(sorted(self.markets))}")
        return mkt

    async def submit(self, market: str, cmd: Any, key: str, user: str) -> list[dict[str, Any]]:
        """Store a command; return its events once the matching daemon has stored them."""
        inbox = f"{self._prefix}.{next(self._ids)}"
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[inbox] = fut
        headers = {"Nats-Msg-Id": f"{user}:{key}", names.REPLY_HEADER: inbox}
        request_id = bound("request_id")
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id  # matching logs its work on this command with it
        started = time.perf_counter()
        try:
            ack = await self.js.publish(names.order_subject(market), ex_encode(cmd), headers=headers, timeout=5)
            if ack.duplicate:
                # A retry of a command already stored: answer with its recorded outcome.
                self._waiters.pop(inbox, None)
                for _ in range(50):
                    data = await self.query("outcome", {"user": user, "client_order_id": key})
                    if data != b"null":
                        return [own_view(e, user) for e in msgspec.json.decode(data) if concerns(e, user)]
                    # Matching keeps recent outcomes in memory only; one from before its last
                    # snapshot is gone after a restart, but the order's events are in the views.
                    recorded = await self.recorded_outcome(user, key)
                    if recorded:
                        return recorded
                    await asyncio.sleep(0.1)
                raise ExchangeUnavailable("the order is stored but not processed yet", "check `stockctl orders`")
            data = await asyncio.wait_for(fut, 10)
            if self.ack_seconds is not None:
                self.ack_seconds.observe(time.perf_counter() - started)
        except TimeoutError:
            raise ExchangeUnavailable(
                "the order is stored; the matching engine has not answered yet",
                "it will be processed when matching is back: check `stockctl orders`",
            ) from None
        except (
            nats.errors.NoRespondersError,
            nats.errors.TimeoutError,
            nats.errors.ConnectionClosedError,
            nats.js.errors.NoStreamResponseError,  # NATS going away or not back yet
        ) as exc:
            raise ExchangeUnavailable(f"could not store the order ({exc.__class__.__name__})", "retry") from None
        finally:
            self._waiters.pop(inbox, None)
        return [own_view(e, user) for e in msgspec.json.decode(data) if concerns(e, user)]

    async def ensure_funded(self, user: str) -> None:
        """A new account's demo balances, once (the engine ignores a second funding)."""
        if user in self.funded:
            return
        # A fresh id per attempt, not a fixed "fund": after a matching restart the outcome of a
        # funding older than its snapshot is unknown, so a de-duplicated resend (a restarted
        # gateway) could never be answered. A repeat is only rejected as already_funded.
        key = f"fund-{uuid.uuid4().hex}"
        cmd = Fund(user=user, request_id=key, amounts=dict(self.s.demo_balances), ts=time.time_ns())
        await self.submit(names.ACCOUNTS_MARKET, cmd, key, user)
        self.funded.add(user)

    async def place(self, user: str, order: OrderIn) -> list[dict[str, Any]]:
        market = await self.known_market(order.market)
        coid = uuid.uuid4().hex if order.client_order_id is None else order.client_order_id
        if not COID_RE.fullmatch(coid):
            raise UsageError("bad client_order_id", "use 1-64 of A-Z, a-z, 0-9, _ . -")
        if order.stop_price is not None:
            # With a price, a stop is taken as a stop-limit; a stop buy with a cap says type "stop".
            default = "stop_limit" if order.price is not None else "stop"
        else:
            default = "limit" if order.price is not None else "market"
        otype = order.type or default
        tif = "gtd" if order.expire_at is not None and order.tif == "gtc" else order.tif
        if (
            otype not in ("limit", "market", "stop", "stop_limit")
            or order.side not in ("buy", "sell")
            or tif not in ("gtc", "ioc", "fok", "gtd")
        ):
            raise UsageError(
                "bad order", "side is buy or sell, type limit, market, stop or stop_limit, tif gtc, ioc, fok or gtd"
            )
        try:
            expire = None if order.expire_at is None else expire_at_ns(order.expire_at)
        except ValueError as exc:
            raise UsageError(str(exc), "e.g. 2030-01-02T15:04:05Z or 1893596645000") from None
        await self.ensure_funded(user)
        cmd = Place(
            user=user,
            client_order_id=coid,
            market=market,
            side=order.side,
            type=otype,  # type: ignore[arg-type]
            qty=order.qty,
            ts=time.time_ns(),
            price=order.price,
            tif=tif,  # type: ignore[arg-type]
            post_only=order.post_only,
            stop_price=order.stop_price,
            expire_at=expire,
            display_qty=order.display_qty,
        )
        return await self.submit(market, cmd, coid, user)

    async def amend(self, user: str, order_id: int, change: AmendIn) -> list[dict[str, Any]]:
        """Amend one of the user's open orders; someone else's is unknown, like a missing one."""
        if change.market is None:
            opens = msgspec.json.decode(await self.query("orders", {"user": user}))
            mine = next((o for o in opens if o["order_id"] == order_id), None)
            if mine is None:
                raise NotFound(f"no open order {order_id}", "see `stockctl orders`")
            market = mine["market"]
        else:
            market = await self.known_market(change.market)
        key = f"amend-{uuid.uuid4().hex}"
        cmd = Amend(user, key, market, order_id, time.time_ns(), price=change.price, qty=change.qty)
        return await self.submit(market, cmd, key, user)

    async def cancel(self, user: str, market: str, order_id: int) -> list[dict[str, Any]]:
        market = await self.known_market(market)
        key = f"cancel-{uuid.uuid4().hex}"
        cmd = Cancel(user=user, request_id=key, market=market, order_id=order_id, ts=time.time_ns())
        return await self.submit(market, cmd, key, user)

    async def cancel_all(self, user: str, market: str) -> list[dict[str, Any]]:
        market = await self.known_market(market)
        key = f"cancel-all-{uuid.uuid4().hex}"
        return await self.submit(
            market, CancelAll(user=user, request_id=key, market=market, ts=time.time_ns()), key, user
        )

    async def recent_trades(self, market: str, limit: int) -> list[Any]:
        market = await self.known_market(market)
        raw = await self.r.lrange(names.trades_key(market), -limit, -1)
        return [public_trade_decoder.decode(b) for b in raw]

    async def fills(self, user: str, limit: int) -> list[dict[str, Any]]:
        raw = await self.r.lrange(names.fills_key(user), -limit, -1)
        return [fill_view(user, msgspec.json.decode(b)) for b in raw]

    async def recorded_outcome(self, user: str, client_order_id: str) -> list[dict[str, Any]] | None:
        """An order's events from the Redis views (accepted or rejected, its fills, its cancel)."""
        orders = [msgspec.json.decode(b) for b in await self.r.lrange(names.orders_key(user), 0, -1)]
        first = next(
            (
                e
                for e in orders
                if e.get("event") in ("accepted", "rejected") and e.get("client_order_id") == client_order_id
            ),
            None,
        )
        if first is None:
            return None
        if first["event"] == "rejected":
            return [first]
        oid = first["order_id"]
        fills = [msgspec.json.decode(b) for b in await self.r.lrange(names.fills_key(user), 0, -1)]
        mine = [own_view(t, user) for t in fills if t.get("taker_order_id") == oid and t.get("taker_user") == user]
        ended = [e for e in orders if e.get("event") == "cancelled" and e.get("order_id") == oid]
        return sorted([first, *mine, *ended], key=lambda e: e["seq"])

    async def order_history(self, user: str, limit: int) -> list[Any]:
        raw = await self.r.lrange(names.orders_key(user), -limit, -1)
        return [msgspec.json.decode(b) for b in raw]


class ExchangeUnavailable(StockctlError):
    """The matching daemon did not answer in time."""


class PublicTrade(msgspec.Struct, tag="trade", tag_field="event"):
    """A trade as everyone may see it (``trades:MKT``): no users, order ids or fees."""

    seq: int
    ts: int
    market: str
    trade_id: int
    price: str
    qty: str
    taker_side: str


public_trade_decoder = msgspec.json.Decoder(PublicTrade)


PRIVATE_TRADE_FIELDS = ("user", "order_id", "client_order_id", "remaining", "fee")


def own_view(event: dict[str, Any], user: str) -> dict[str, Any]:
    """An event as ``user`` may see it: of a trade, only their own side's user, order and fee.

    The engine's trade names both sides; a counterparty's email, order ids and fee are
    nobody else's business, so every event leaving the gateway for a user passes here.
    """
    if event.get("event") != "trade":
        return event
    out = dict(event)
    for side in ("maker", "taker"):
        if out.get(f"{side}_user") != user:
            for name in PRIVATE_TRADE_FIELDS:
                out.pop(f"{side}_{name}", None)
    return out


def concerns(event: dict[str, Any], user: str) -> bool:
    """Whether an event of a command's outcome is ``user``'s business. A command can also expire
    others' good-till-date orders and trigger others' stops: their events reach their owners on
    the ``orders`` channel, never the answer to someone else's request. Trades stay (own_view
    strips what is not the user's)."""
    return event.get("event") == "trade" or event.get("user") == user


def fill_view(user: str, t: dict[str, Any]) -> dict[str, Any]:
    """A trade from one side's point of view."""
    taker = t["taker_user"] == user
    side = t["taker_side"] if taker else ("sell" if t["taker_side"] == "buy" else "buy")
    return {
        "ts": t["ts"],
        "market": t["market"],
        "side": side,
        "qty": t["qty"],
        "price": t["price"],
        "fee": t["taker_fee"] if taker else t["maker_fee"],
        "liquidity": "taker" if taker else "maker",
        "order_id": t["taker_order_id"] if taker else t["maker_order_id"],
        "client_order_id": t["taker_client_order_id"] if taker else t["maker_client_order_id"],
        "trade_id": t["trade_id"],
    }


def order_result(events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for a command's events: 201/200 with status, or 422 with the reason."""
    first = events[0] if events else {}
    if first.get("event") == "rejected":
        return 422, {"error": first["code"], "detail": first["reason"], "events": events}
    accepted = next((e for e in events if e.get("event") == "accepted"), None)
    body: dict[str, Any] = {"events": events}
    if accepted is not None:
        oid = accepted["order_id"]
        fills = [
            e for e in events if e.get("event") == "trade" and oid in (e.get("maker_order_id"), e.get("taker_order_id"))
        ]
        cancelled = next((e for e in events if e.get("event") == "cancelled" and e["order_id"] == oid), None)
        remaining = fills[-1]["taker_remaining"] if fills else accepted["qty"]
        if cancelled is not None:
            status = "cancelled" if not fills else "partially_filled_cancelled"
        elif fills and _is_zero(remaining):
            status = "filled"
        elif fills:
            status = "partially_filled"
        elif accepted.get("stop_price") and not any(e.get("event") == "triggered" for e in events):
            status = "pending"  # a stop, waiting for its trigger
        else:
            status = "open"
        body |= {
            "order_id": oid,
            "client_order_id": accepted["client_order_id"],
            "status": status,
            "filled": [{"qty": f["qty"], "price": f["price"], "fee": f["taker_fee"]} for f in fills],
        }
        return 201, body
    return 200, body


def amend_result(events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for an amend: 200 with the amended order, 404 if unknown, else 422."""
    first = next((e for e in events if e.get("event") in ("amended", "rejected")), {})
    if first.get("event") != "amended":
        status = 404 if first.get("code") == "unknown_order" else 422
        return status, {"error": first.get("code", "unknown"), "detail": first.get("reason", ""), "events": events}
    oid = first["order_id"]
    fills = [e for e in events if e.get("event") == "trade" and e.get("taker_order_id") == oid]
    cancelled = any(e.get("event") == "cancelled" and e.get("order_id") == oid for e in events)
    remaining = fills[-1]["taker_remaining"] if fills else first["remaining"]
    status = "cancelled" if cancelled else "filled" if _is_zero(remaining) else "open"
    return 200, {
        "order_id": oid,
        "client_order_id": first["client_order_id"],
        "status": status,
        "price": first["new_price"],
        "qty": first["new_qty"],
        "remaining": remaining,
        "priority": first["priority"],
        "filled": [{"qty": f["qty"], "price": f["price"], "fee": f["taker_fee"]} for f in fills],
        "events": events,
    }


def _is_zero(text: str) -> bool:
    return text.strip("0.") == ""


# --- WebSocket ----------------------------------------------------------------------------


class ClientMsg(msgspec.Struct, forbid_unknown_fields=True):
    """What a WebSocket client may send."""

    op: str
    channels: list[str] = []
    token: str | None = None
    id: int | str | None = None
    order: OrderIn | None = None
    order_id: int | None = None
    market: str | None = None
    price: str | None = None  # amend
    qty: str | None = None  # amend


client_msg_decoder = msgspec.json.Decoder(ClientMsg)


def decode_strict(decoder: msgspec.json.Decoder, raw: str | bytes, where: str) -> Any:
    """``decoder.decode(raw)``, with invalid UTF-8 and duplicate keys as ``msgspec.DecodeError`` too."""
    try:
        value = decoder.decode(raw)
    except UnicodeDecodeError:
        raise msgspec.DecodeError("JSON is malformed: a string is not valid UTF-8") from None
    key = duplicate_key(raw)
    if key is not None:
        raise msgspec.DecodeError(f"duplicate key {key!r} in the {where}")
    return value


encode = msgspec.json.Encoder().encode


def frame(kind: str, channel: str, data: bytes) -> bytes:
    """A server frame around an already-encoded JSON payload (spliced, not re-encoded)."""
    return b'{"type":"' + kind.encode() + b'","channel":"' + channel.encode() + b'","data":' + data + b"}"


class Client:
    """One WebSocket connection: its subscriptions and its backlog when it falls behind."""

    _ids = itertools.count()

    def __init__(self, ws: ServerConnection, settings: Settings) -> None:
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
            broadcast((self.ws,), data, text=True)
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
        if ch.kind in ("book", "trades"):
            await self.exchange.known_market(ch.symbol)
        elif ch.kind not in ("orders", "alerts"):
            await self.store.known(ch.symbol)
        client.channels.add(ch.name)
        self.members.setdefault(ch.name, set()).add(client)
        if ch.kind == "orders":
            self.by_user.setdefault(client.email, set()).add(client)
        elif ch.kind == "alerts":
            self.alert_users.setdefault(client.email, set()).add(client)
        if ch.subject not in self.nats_subs:
            self.nats_subs[ch.subject] = await self.nc.subscribe(ch.subject, cb=self._fan_out(ch))
        await self._snapshot(client, ch)

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
                fast.append(client.ws)
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
        if not data.startswith(b'{"event":"trade"'):
            return
        market = names.symbol_of(msg.subject)
        members = self.members.get(f"trades:{market}")
        if members:
            public = encode(public_trade_decoder.decode(data))
            self._send(members, None, frame("trade", f"trades:{market}", public))

    async def _route_own_events(self, msg: Msg) -> None:
        """Each user's own events of ``ex.event.>`` to their ``orders`` channel."""
        if not self.by_user:
            return
        data = msg.data
        ev = event_decoder.decode(data)
        if isinstance(ev, Trade):
            doc = msgspec.json.decode(data)
            for user in {ev.maker_user, ev.taker_user}:
                mine = self.by_user.get(user)
                if mine:  # each side sees its own fill, not who was on the other side
                    self._send(mine, None, frame("order_event", "orders", encode(own_view(doc, user))))
            return
        mine = self.by_user.get(ev.user)
        if mine:
            self._send(mine, None, frame("order_event", "orders", data))

    async def _route_alerts(self, msg: Msg) -> None:
        """A fired alert goes to its own user's ``alerts`` channel only."""
        mine = self.alert_users.get(alert_decoder.decode(msg.data).user)
        if mine:
            self._send(mine, None, frame("alert", "alerts", msg.data))


class WsServer:
    """The WebSocket side: handshake auth, the per-client read loop, heartbeats."""

    def __init__(self, settings: Settings, hub: Hub, keys: KeyRing, r: aioredis.Redis, status: StatusFile) -> None:
        self.s, self.hub, self.keys, self.r, self.status = settings, hub, keys, r, status
        self.heap = HeapFreezer()

    async def process_request(self, conn: ServerConnection, request: WsRequest) -> WsResponse | None:
        if request.path.split("?")[0] != "/ws":
            return conn.respond(404, "WebSocket endpoint is /ws\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        client = Client(ws, self.s)
        self.hub.clients.add(client)
        self.status.incr("connections")
        writer = asyncio.create_task(client.write_backlog())
        try:
            if not await self._authenticate(client, ws.request.headers if ws.request else Headers()):
                return
            async for raw in ws:
                await self._on_message(client, raw)
        except websockets.ConnectionClosed:
            pass
        finally:
            client.closing = True
            writer.cancel()
            await self.hub.drop(client)

    async def _authenticate(self, client: Client, headers: Headers) -> bool:
        header = headers.get("Authorization")
        if not header and self.s.public_market_data:
            return True  # anonymous: market-data channels only, until an `auth` message (_on_message)
        try:
            if header:
                client.claims = await check_user(self.r, self.keys, header)
            else:
                raw = await asyncio.wait_for(client.ws.recv(), AUTH_TIMEOUT_S)
                msg = decode_strict(client_msg_decoder, raw, "message")
                if msg.op != "auth" or not msg.token:
                    raise Unauthorized("authenticate first", 'send {"op":"auth","token":"<access token>"}')
                client.claims = await check_user(self.r, self.keys, f"Bearer {msg.token}")
        except TimeoutError:
            await client.ws.close(CLOSE_UNAUTHORIZED, "no auth message within 10 s")
            return False
        except (msgspec.DecodeError, msgspec.ValidationError):
            await client.ws.close(CLOSE_UNAUTHORIZED, "first message must be an auth message")
            return False
        except Forbidden as exc:
            await client.ws.close(CLOSE_FORBIDDEN, str(exc)[:120])
            return False
        except Unauthorized as exc:
            await client.ws.close(CLOSE_UNAUTHORIZED, str(exc)[:120])
            return False
        except RedisError:
            await client.ws.close(CLOSE_TRY_LATER, "storage unavailable; reconnect shortly")
            return False
        client.send_now({"type": "welcome", "email": client.claims.email, "expires": client.claims.exp})
        return True

    async def _on_message(self, client: Client, raw: str | bytes) -> None:
        if client.closing:  # closed by the gateway (disabled, expired): what is still queued is not served
            return
        if not client.allow():
            client.violations += 1
            if client.violations > self.s.ws_max_messages_per_s * 2:
                client.close_later(CLOSE_POLICY, "message rate limit exceeded")
            else:
                client.send_now({"type": "error", "error": "rate_limited", "detail": "slow down"})
            return
        try:
            msg = decode_strict(client_msg_decoder, raw, "message")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            client.send_now({"type": "error", "error": "bad_message", "detail": str(exc)[:200]})
            return
        reply: dict[str, Any] = {"id": msg.id} if msg.id is not None else {}
        try:
            if client.claims is None and not gateway_seeds.anonymous_may(msg.op, msg.channels, self.hub.parse):
                raise Unauthorized("this needs a token", 'send {"op":"auth","token":"<access token>"} first')
            if msg.op == "ping":
                client.send_now({"type": "pong", **reply})
            elif msg.op in ("subscribe", "unsubscribe"):
                if not msg.channels or len(msg.channels) > 100:
                    raise UsageError("give 1 to 100 channels")
                for channel in msg.channels:
                    if msg.op == "subscribe":
                        await self.hub.subscribe(client, channel)
                    else:
                        await self.hub.unsubscribe(client, channel)
                client.send_now({"type": f"{msg.op}d", "channels": sorted(client.channels), **reply})
            elif msg.op in ("place", "cancel") and await self.r.sismember(names.DISABLED_KEY, client.email):
                # An order is worth one lookup: a disable whose announcement is late still stops it.
                raise Forbidden("account disabled", "ask the operator to enable it")
            elif msg.op == "place":
                if msg.order is None:
                    raise UsageError("place needs an order", '{"op":"place","order":{"market":..,"side":..,"qty":..}}')
                code, doc = order_result(await self.hub.exchange.place(client.email, msg.order))
                client.send_now({"type": "order_result", "code": code, **doc, **reply})
            elif msg.op == "cancel":
                if msg.order_id is None or msg.market is None:
                    raise UsageError("cancel needs order_id and market")
                code, doc = order_result(await self.hub.exchange.cancel(client.email, msg.market, msg.order_id))
                client.send_now({"type": "order_result", "code": code, **doc, **reply})
            elif msg.op == "amend":
                if msg.order_id is None or (msg.price is None and msg.qty is None):
                    raise UsageError(
                        "amend needs order_id and a new price and/or qty",
                        '{"op":"amend","order_id":12,"price":"101.5","qty":"5"}',
                    )
                change = AmendIn(price=msg.price, qty=msg.qty, market=msg.market)
                code, doc = amend_result(await self.hub.exchange.amend(client.email, msg.order_id, change))
                client.send_now({"type": "amend_result", "code": code, **doc, **reply})
            elif msg.op == "auth":
                claims = await check_user(self.r, self.keys, f"Bearer {msg.token or ''}")
                if client.claims is not None and claims.email != client.claims.email:
                    # Channels and routing belong to the first user: a switch would keep
                    # delivering their events here. A fresh token of the same user is fine.
                    raise UsageError("this connection belongs to another user", "open a new connection to switch")
                client.claims = claims
                client.send_now({"type": "welcome", "email": client.claims.email, "expires": client.claims.exp})
            else:
                raise UsageError(
                    f"unknown op {msg.op[:40]!r}", "ops: auth, subscribe, unsubscribe, ping, place, cancel, amend"
                )
        except (UsageError, NotFound, Unauthorized, ExchangeUnavailable) as exc:
            client.send_now({"type": "error", "error": exc.__class__.__name__.lower(), "detail": str(exc), **reply})
        except Forbidden as exc:
            client.close_later(CLOSE_FORBIDDEN, str(exc))
        except RedisError:
            client.send_now({"type": "error", "error": "unavailable", "detail": "storage unavailable; retry", **reply})

    def close_user(self, email: str, reason: str) -> int:
        """Close every socket of ``email`` with 4403; how many there were."""
        mine = [c for c in self.hub.clients if c.claims is not None and c.claims.email == email and not c.closing]
        for client in mine:
            client.close_later(CLOSE_FORBIDDEN, reason)
        return len(mine)

    async def on_disabled(self, msg: Msg) -> None:
        """The operator disabled an account (``stockctl users disable``): its sockets go now."""
        try:
            email = msgspec.json.decode(msg.data)["email"]
        except (msgspec.DecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed account announcement on %s", msg.subject)
            return
        if isinstance(email, str) and self.close_user(email, "account disabled"):
            log.info("account %s disabled: its connections are closed", email)

    async def watch_disabled(self, stop: asyncio.Event) -> None:
        """Every ``disabled_check_s``, close sockets of disabled accounts whose announcement was lost."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.s.disabled_check_s)
            emails = sorted({c.claims.email for c in self.hub.clients if c.claims is not None and not c.closing})
            if not emails:
                continue
            try:
                flags = await self.r.smismember(names.DISABLED_KEY, emails)
            except RedisError:
                continue  # Redis away: the next round tries again; check_user refuses new work meanwhile
            for email, disabled in zip(emails, flags, strict=True):
                if disabled and self.close_user(email, "account disabled"):
                    log.info("account %s is disabled: its connections are closed", email)

    async def watchdog(self, stop: asyncio.Event) -> None:
        """Close clients whose token expired or whose backlog stopped moving."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            now, wall = time.monotonic(), time.time()
            for client in list(self.hub.clients):
                if client.claims and client.claims.exp < wall:
                    client.close_later(CLOSE_UNAUTHORIZED, "token expired; reconnect with a fresh one")
                elif client.stalled_since is not None and now - client.stalled_since > STALL_LIMIT_S:
                    client.close_later(CLOSE_SLOW, "client too slow: nothing delivered for 10 s")
            self.status.info["clients"] = len(self.hub.clients)
            self.heap.update(len(self.hub.clients))


# --- HTTP ---------------------------------------------------------------------------------


SMALL_BODY_BYTES = 4096


async def small_body(request: Request, decoder: msgspec.json.Decoder, what: str) -> Any:
    """A small JSON body decoded strictly, or the 413/422 response that says what is wrong."""
    body = await request.body()
    if len(body) > SMALL_BODY_BYTES:
        return error_response(413, "too_large", f"{what} body over 4 KiB")
    try:
        return decode_strict(decoder, body, what)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return error_response(422, "invalid", str(exc))


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json")


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def inside_auth(raw_path: str) -> bool:
    """True if ``raw_path`` stays under ``/auth/`` however it is decoded: no ``.`` or ``..``
    segment (also as ``%2e``, ``%252e``...), no backslash, no encoded slash."""
    path = raw_path
    for _ in range(4):  # undo layered percent-encoding; a fifth layer is refused below
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        return False
    if "\\" in path or not path.startswith("/auth/") or path.count("/") != raw_path.count("/"):
        return False
    return not any(seg in (".", "..") for seg in path.split("/"))


def build_app(
    settings: Settings,
    store: MarketStore,
    exchange: ExchangeApi,
    keys: KeyRing,
    r: aioredis.Redis,
    http: httpx.AsyncClient,
    alerts: AlertStore,
    proxy_secret: str = "",
) -> FastAPI:
    proxies = TrustedProxies(settings.trusted_proxies)
    app = FastAPI(
        title="stockctl gateway",
        version="1",
        description="Market data over REST; live channels over WebSocket at /ws on the ws port.",
    )

    @app.exception_handler(StockctlError)
    async def _stockctl_error(_: Request, exc: StockctlError) -> JSONResponse:
        status = {UsageError: 400, NotFound: 404, Unauthorized: 401, Forbidden: 403, ExchangeUnavailable: 503}.get(
            type(exc), 400
        )
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, type(exc).__name__.lower(), str(exc), headers)

    @app.exception_handler(RedisError)
    async def _redis_error(_: Request, exc: RedisError) -> JSONResponse:
        # Redis restarting: a 503 the client can retry, not a 500 with a traceback in the log.
        return error_response(503, "unavailable", f"the data store is not answering ({exc.__class__.__name__})")

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        # The client hung up mid-body: nobody is left to answer, and it is not the gateway's fault.
        log.debug("client disconnected before sending the whole body: %s %s", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        return error_response(422, "invalid", f"{where}: {err.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http", str(exc.detail))

    async def user(request: Request) -> Claims:
        return await check_user(r, keys, request.headers.get("authorization"))

    market_data = gateway_seeds.market_reader(settings, user)  # market data: public if configured

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/info")
    async def info() -> dict[str, Any]:
        """Where the WebSocket is and which candle intervals exist (no token needed)."""
        return {"ws_url": settings.ws_url, "candle_intervals": settings.candle_intervals, "version": "1"}

    @app.get("/api/v1/symbols")
    async def symbols(request: Request) -> Response:
        await market_data(request)
        return json_response(await store.symbols())

    @app.get("/api/v1/prices")
    async def prices(request: Request) -> Response:
        """Latest quote of every symbol."""
        await market_data(request)
        return json_response(await store.quotes())

    @app.get("/api/v1/prices/{symbol:symbol}")
    async def price(symbol: str, request: Request) -> Response:
        await market_data(request)
        return json_response(await store.quote(symbol))

    reader = HistoryReader(settings, store)  # Redis's window, the history store (read-only) beyond it

    @app.get("/api/v1/history/{symbol:symbol}")
    async def history(
        request: Request,
        symbol: str,
        limit: int = Query(100, ge=1, le=10_000),
        since: str | None = Query(None, description="a duration back from now: 90s, 2h, 30d"),
        start: str | None = Query(None, alias="from", description="ISO 8601 (naive is UTC) or epoch s/ms/ns"),
        end: str | None = Query(None, alias="to", description="exclusive end, like from"),
        after: str | None = Query(None, description="TS:SEQ of the last point of the previous page"),
    ) -> Response:
        """``[price, ts_ns, seq]`` points oldest first: the latest ``limit``, or the first of a range
        (a full page's ``X-Next-After`` header continues it)."""
        await market_data(request)
        points, cursor = await reader.history(symbol, limit, since, start, end, after)
        resp = json_response(points)
        if cursor is not None:
            resp.headers["X-Next-After"] = cursor
        return resp

    @app.get("/api/v1/candles/{symbol:symbol}")
    async def candles(
        request: Request,
        symbol: str,
        interval: str = "1m",
        limit: int = Query(100, ge=1, le=10_000),
        since: str | None = Query(None, description="a duration back from now: 90s, 2h, 30d"),
        start: str | None = Query(None, alias="from", description="ISO 8601 (naive is UTC) or epoch s/ms/ns"),
        end: str | None = Query(None, alias="to", description="exclusive end, like from"),
        after: str | None = Query(None, description="start (ns) of the last candle of the previous page"),
    ) -> Response:
        """OHLCV candles oldest first (1s, 1m and 1h from the history store beyond Redis's window)."""
        await market_data(request)
        rows, cursor = await reader.candles(symbol, interval, limit, since, start, end, after)
        resp = json_response(rows)
        if cursor is not None:
            resp.headers["X-Next-After"] = cursor
        return resp

    @app.get("/api/v1/signals/{symbol:symbol}")
    async def signals(request: Request, symbol: str, limit: int = Query(50, ge=1, le=10_000)) -> Response:
        await market_data(request)
        return json_response(await store.signals(symbol, limit))

    # --- exchange -----------------------------------------------------------------

    @app.get("/api/v1/markets")
    async def markets(request: Request) -> Response:
        """Exchange markets with tick size, lot size and order size limits."""
        await market_data(request)
        return Response(await exchange.query("markets", {}), media_type="application/json")

    @app.post("/api/v1/orders", status_code=201, openapi_extra=ORDER_BODY_SPEC)
    async def place(request: Request) -> Response:
        """Place an order; the answer comes from the stored events (accepted + fills, or rejected)."""
        claims = await user(request)
        order = await small_body(request, order_in_decoder, "order")
        if isinstance(order, Response):
            return order
        status, doc = order_result(await exchange.place(claims.email, order))
        return json_response(doc, status)

    @app.patch("/api/v1/orders/{order_id}")
    async def amend(request: Request, order_id: int) -> Response:
        """Amend one of your open orders: {"price"?, "qty"?} (qty is the new total quantity)."""
        claims = await user(request)
        change = await small_body(request, amend_in_decoder, "amend")
        if isinstance(change, Response):
            return change
        status, doc = amend_result(await exchange.amend(claims.email, order_id, change))
        if status != 200:
            return error_response(status, doc["error"], doc["detail"])
        return json_response(doc, 200)

    @app.delete("/api/v1/orders/{order_id}")
    async def cancel(request: Request, order_id: int, market: str | None = None) -> Response:
        """Cancel one of your open orders (market optional: it is looked up)."""
        claims = await user(request)
        if market is None:
            opens = msgspec.json.decode(await exchange.query("orders", {"user": claims.email}))
            mine = next((o for o in opens if o["order_id"] == order_id), None)
            if mine is None:
                raise NotFound(f"no open order {order_id}", "see `stockctl orders`")
            market = mine["market"]
        events = await exchange.cancel(claims.email, market, order_id)
        status, doc = order_result(events)
        if status == 422:
            return error_response(404, doc["error"], doc["detail"])
        return json_response(doc, 200)

    @app.delete("/api/v1/orders")
    async def cancel_all(request: Request, market: str | None = None) -> Response:
        """Cancel all your open orders, in one market or everywhere."""
        claims = await user(request)
        targets = [await exchange.known_market(market)] if market else await exchange.all_markets()
        events: list[dict[str, Any]] = []
        for mkt in targets:
            events.extend(await exchange.cancel_all(claims.email, mkt))
        cancelled = [e for e in events if e.get("event") == "cancelled"]
        return json_response({"cancelled": len(cancelled), "events": events})

    @app.get("/api/v1/orders")
    async def orders(
        request: Request, market: str | None = None, all: bool = False, limit: int = Query(100, ge=1, le=1000)
    ) -> Response:
        """Your open orders; with ``all=true`` also your order history (newest last)."""
        claims = await user(request)
        if market is not None:
            market = await exchange.known_market(market)
        opens = msgspec.json.decode(await exchange.query("orders", {"user": claims.email, "market": market}))
        if not all:
            return json_response(opens)
        history = await exchange.order_history(claims.email, limit)
        return json_response({"open": opens, "history": [h for h in history if market in (None, h.get("market"))]})

    @app.get("/api/v1/fills")
    async def fills(request: Request, limit: int = Query(100, ge=1, le=1000)) -> Response:
        """Your fills, oldest first: time, market, side, qty, price, fee, order id."""
        claims = await user(request)
        return json_response(await exchange.fills(claims.email, limit))

    @app.get("/api/v1/balances")
    async def balances(request: Request) -> Response:
        """Available and reserved per asset (a new account is funded on first use)."""
        claims = await user(request)
        await exchange.ensure_funded(claims.email)
        return Response(await exchange.query("balances", {"user": claims.email}), media_type="application/json")

    @app.get("/api/v1/book/{market:symbol}")
    async def book(request: Request, market: str, depth: int = Query(20, ge=1, le=500)) -> Response:
        """Depth ladder: bids and asks as [price, qty, orders], best first."""
        await market_data(request)
        market = await exchange.known_market(market)
        return Response(await exchange.query("book", {"market": market, "depth": depth}), media_type="application/json")

    @app.get("/api/v1/trades/{market:symbol}")
    async def trades(request: Request, market: str, limit: int = Query(50, ge=1, le=1000)) -> Response:
        await market_data(request)
        return json_response(await exchange.recent_trades(market, limit))

    # --- price alerts -------------------------------------------------------------

    @app.post("/api/v1/alerts", status_code=201)
    async def add_alert(request: Request) -> Response:
        """Set a price alert: ``above``/``below`` a price, or ``cross-sma`` (the next SMA crossover)."""
        claims = await user(request)
        req = await small_body(request, alert_in_decoder, "alert")
        if isinstance(req, Response):
            return req
        try:
            return json_response(await alerts.add(claims.email, req, store), 201)
        except TooManyAlerts as exc:
            return error_response(409, "too_many_alerts", str(exc))

    @app.get("/api/v1/alerts")
    async def list_alerts(request: Request) -> Response:
        """Your active alerts and your recently fired ones (oldest first)."""
        claims = await user(request)
        return json_response(await alerts.listing(claims.email))

    @app.delete("/api/v1/alerts/{alert_id}")
    async def remove_alert(request: Request, alert_id: int) -> Response:
        """Remove one of your active alerts (anyone else's is a 404, like an unknown id)."""
        claims = await user(request)
        return json_response(await alerts.remove(claims.email, alert_id))

    async def proxy(request: Request, path: str) -> Response:
        body = await request.body()
        if len(body) > 64 * 1024:
            return error_response(413, "too_large", "request body over 64 KiB")
        # Raw bytes both ways: a header value need not be ASCII, and the path goes on as the client sent it.
        # Only these three pass: a client's own X-Forwarded-For or proxy secret never reaches auth.
        headers = [(k, v) for k, v in request.headers.raw if k in (b"content-type", b"authorization", b"accept")]
        client = proxies.client_address(
            request.client.host if request.client else None, request.headers.getlist("x-forwarded-for")
        )
        headers.append((b"x-forwarded-for", client.encode()))
        headers.append((PROXY_SECRET_HEADER.encode(), proxy_secret.encode()))  # auth believes the line above
        headers.append((REQUEST_ID_HEADER.encode(), (bound("request_id") or new_request_id()).encode()))
        try:
            upstream = await http.request(
                request.method, path, content=body, headers=headers, params=request.query_params
            )
        except httpx.InvalidURL:
            return error_response(400, "bad_request", "this URL cannot be passed on to the auth daemon")
        except httpx.HTTPError as exc:
            return error_response(503, "auth_unavailable", f"auth daemon unreachable: {exc.__class__.__name__}")
        keep = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() in ("content-type", "retry-after", "www-authenticate")
        }
        return Response(upstream.content, status_code=upstream.status_code, headers=keep)

    @app.api_route("/auth/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    async def auth_proxy(request: Request, rest: str) -> Response:
        raw_path = (request.scope.get("raw_path") or f"/auth/{rest}".encode()).decode("latin-1")
        if not inside_auth(raw_path):
            return error_response(404, "not_found", "no such endpoint: the path leaves /auth/")
        return await proxy(request, raw_path)

    @app.get("/.well-known/jwks.json", include_in_schema=False)
    async def jwks(request: Request) -> Response:
        return await proxy(request, "/.well-known/jwks.json")

    gateway_seeds.add_routes(app, settings, store, exchange, keys, r, user, proxy)
    return app


# --- daemon -------------------------------------------------------------------------------


async def run(settings: Settings) -> None:
    stop = shutdown_event()
    status = StatusFile(settings, "gateway")
    async with AsyncExitStack() as stack:
        # --- startup ---------------------------------------------------------------
        ops = await start_ops(stack, settings, "gateway", status)
        r = await open_redis(stack, ops, stop, log)
        if r is None:
            return
        nc = await open_nats(stack, ops, stop, log)
        if nc is None:
            return
        keys = KeyRing(settings.effective_auth_url)
        if not await keys.load(stop):
            return
        proxy_secret = load_proxy_secret(settings.secrets_dir)  # proves to auth that X-Forwarded-For is ours
        http = httpx.AsyncClient(base_url=settings.effective_auth_url, timeout=10)
        stack.push_async_callback(http.aclose)
        store = MarketStore(r, settings.candle_intervals)
        exchange = ExchangeApi(settings, nc, nc.jetstream(), r)
        exchange.ack_seconds = ops.histogram("order_ack_seconds", "Order or cancel: submitted to answered")
        await exchange.start()
        alerts = AlertStore(r, settings.alerts_per_user, publish=nc.publish)
        hub = Hub(nc, store, exchange, status, alerts)
        ws_server = WsServer(settings, hub, keys, r, status)
        await nc.subscribe(names.ACCOUNT_DISABLED_SUBJECT, cb=ws_server.on_disabled)
        disabled_task = asyncio.create_task(ws_server.watch_disabled(stop))
        ws = await websockets.serve(
            ws_server.handler,
            settings.host,
            settings.ws_port,
            process_request=ws_server.process_request,
            max_size=settings.ws_max_message_bytes,
            ping_interval=settings.ws_ping_interval_s,
            ping_timeout=settings.ws_ping_interval_s * 2,
            max_queue=16,
            compression=None,  # per-message deflate costs more CPU than quote frames save
        )
        stack.push_async_callback(ws.wait_closed)
        stack.callback(ws.close)
        http_server = UvicornServer(
            HttpMetrics(BodyLimit(build_app(settings, store, exchange, keys, r, http, alerts, proxy_secret)), ops),
            settings.host,
            settings.gateway_port,
            ws="websockets-sansio",  # the seed clients' /ws
        )
        serve_task = asyncio.create_task(http_server.serve())
        await http_server.wait_started(serve_task)
        ws_server.heap.startup()
        status.ready = True
        status.info |= {"http": settings.gateway_url, "ws": settings.ws_url, "clients": 0}
        status_task = asyncio.create_task(status.run(stop))
        stack.callback(status.remove)
        log.info("serving HTTP on %s and WebSocket on %s", settings.gateway_url, settings.ws_url)

        # --- main loop -------------------------------------------------------------
        await ws_server.watchdog(stop)

        # --- shutdown --------------------------------------------------------------
        for client in list(hub.clients):
            client.close_later(1001, "gateway shutting down")
        http_server.should_exit = True
        await serve_task
        await status_task
        await disabled_task


if __name__ == "__main__":
    main("gateway", run)
