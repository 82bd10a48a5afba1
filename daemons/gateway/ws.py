"""The gateway's WebSocket protocol on ``ws_port`` (path ``/ws``), and on the REST port at
``/api/v1/ws`` (:mod:`daemons.gateway.ws_asgi`): authenticate, then ops.

A client authenticates with an ``Authorization`` header or, within 10 s, a first message
``{"op":"auth","token":...}``. With ``public_market_data`` it may instead stay anonymous: then
it may ping, authenticate and (un)subscribe market-data channels, never trade nor see
``orders`` or ``alerts`` (:func:`anonymous_may`). Then it sends :class:`~stockctl.wire.gateway.ClientMsg`
ops: ``subscribe``/``unsubscribe`` (fan-out: :mod:`daemons.gateway.fanout`), ``ping``, ``place``,
``cancel``, ``amend`` and ``auth`` (a fresh token of the same user). A bad message gets an error
frame and the connection stays; the close codes are in :mod:`stockctl.wire.gateway`.

A disabled account loses its open sockets (4403) at once: ``stockctl users disable``
announces it on ``auth.disabled``, and every ``disabled_check_s`` the gateway re-reads the
disabled set for the users it serves, in case an announcement was lost. A client whose token
expires, or whose backlog has not moved for :data:`STALL_LIMIT_S`, is closed by the watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
import websockets
from nats.aio.msg import Msg
from redis.exceptions import RedisError
from starlette.websockets import WebSocket
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from daemons.gateway.exchange_api import ExchangeUnavailable, amend_result, order_result
from daemons.gateway.fanout import Channel, Client, Hub
from daemons.gateway.tokens import Forbidden, KeyRing, Unauthorized, check_user
from daemons.gateway.ws_asgi import AsgiSocket
from stockctl.errors import NotFound, UsageError
from stockctl.runtime.process import HeapFreezer
from stockctl.runtime.status import StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.gateway import (
    CLOSE_FORBIDDEN,
    CLOSE_POLICY,
    CLOSE_SLOW,
    CLOSE_TRY_LATER,
    CLOSE_UNAUTHORIZED,
    AmendIn,
    client_msg_decoder,
)
from stockctl.wire.strictjson import decode_strict

log = logging.getLogger("stockctl.gateway")

AUTH_TIMEOUT_S = 10.0
STALL_LIMIT_S = 10.0  # a client whose backlog has not moved for this long is closed


PRIVATE_CHANNELS = ("orders", "alerts")


def anonymous_may(op: str, channels: list[str], parse: Callable[[str], Channel]) -> bool:
    """Whether a token-less client of our own WebSocket (``public_market_data``) may do ``op``:
    ping, auth, and (un)subscribing market-data channels; never trading or private channels."""
    if op in ("ping", "auth", "unsubscribe"):
        return True
    return op == "subscribe" and not any(parse(c).kind in PRIVATE_CHANNELS for c in channels)


class WsServer:
    """The WebSocket side: handshake auth, the per-client read loop, heartbeats."""

    def __init__(self, settings: Settings, hub: Hub, keys: KeyRing, r: aioredis.Redis, status: StatusFile) -> None:
        self.s, self.hub, self.keys, self.r, self.status = settings, hub, keys, r, status
        self.heap = HeapFreezer()

    async def process_request(self, conn: ServerConnection, request: WsRequest) -> WsResponse | None:
        if request.path.split("?")[0] != "/ws":
            return conn.respond(404, "WebSocket endpoint is /ws\n")
        return None

    async def serve_asgi(self, ws: WebSocket) -> None:
        """The same protocol for a client of ``/api/v1/ws`` on the REST port (uvicorn)."""
        await ws.accept()
        sock = AsgiSocket(ws)
        try:
            await self.handler(sock)
        finally:
            await sock.close(1000)

    async def handler(self, ws: ServerConnection | AsgiSocket) -> None:
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
            if client.claims is None and not anonymous_may(msg.op, msg.channels, self.hub.parse):
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
            elif msg.op in ("place", "cancel", "amend") and await self.r.sismember(names.DISABLED_KEY, client.email):
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
