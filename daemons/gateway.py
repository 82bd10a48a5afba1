"""gateway: the clients' door. REST over HTTP, live channels over WebSocket, JWT on both.

* HTTP (FastAPI on ``gateway_port``): market data under ``/api/v1``, seed-002 aliases
  (``/prices``, ``/price/{symbol}``, ``/price/history/{symbol}/{limit}``), and ``/auth/*``
  passed through to the auth daemon so a client needs one base URL.
* WebSocket (``websockets`` on ``ws_port``, path ``/ws``): authenticate (header or first
  message), subscribe to channels, get a snapshot and then updates.

Fan-out is built for many clients on few cores: each NATS message becomes one frame
(the payload is spliced in, never re-encoded) written synchronously to every client
whose socket keeps up. A client that falls behind gets a private backlog in which
quotes and candles are conflated to the latest per channel; one that cannot keep up at
all is closed with a reason. Slow clients never delay the others.

The gateway holds no state of its own: any number of them serve the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
import websockets
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from starlette.exceptions import HTTPException as StarletteHTTPException
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from stockctl import names
from stockctl.errors import NotFound, StockctlError, UsageError
from stockctl.marketstore import MarketStore, check_symbol
from stockctl.service import (
    StatusFile,
    UvicornServer,
    backoff_sleep,
    connect_nats,
    main,
    redis_client,
    shutdown_event,
    wait_redis,
)
from stockctl.settings import Settings
from stockctl.tokens import Claims, TokenError, TokenVerifier

log = logging.getLogger("stockctl.gateway")

AUTH_TIMEOUT_S = 10.0
STALL_LIMIT_S = 10.0  # a client whose backlog has not moved for this long is closed
SNAPSHOT_LIMIT = 50  # signals / candles sent with a subscription

# Close codes: 4401 unauthorized, 4403 forbidden; 1008 policy (rate), 1013 try again later (too slow).
CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_POLICY, CLOSE_SLOW = 4401, 4403, 1008, 1013


# --- tokens -------------------------------------------------------------------------------


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


# --- WebSocket ----------------------------------------------------------------------------


class ClientMsg(msgspec.Struct, forbid_unknown_fields=True):
    """What a WebSocket client may send."""

    op: str
    channels: list[str] = []
    token: str | None = None
    id: int | str | None = None


client_msg_decoder = msgspec.json.Decoder(ClientMsg)
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


class Hub:
    """Channels -> clients, with one NATS subscription per channel while anyone listens."""

    def __init__(self, nc: NATS, store: MarketStore, status: StatusFile) -> None:
        self.nc, self.store, self.status = nc, store, status
        self.members: dict[str, set[Client]] = {}
        self.nats_subs: dict[str, Any] = {}
        self.clients: set[Client] = set()

    def parse(self, channel: str) -> tuple[str, str, str]:
        """``quotes:AAPL`` -> (kind, symbol, subject); raises UsageError naming the forms."""
        parts = channel.split(":")
        kind = parts[0]
        if kind in ("quotes", "signals") and len(parts) == 2:
            sym = check_symbol(parts[1])
            subject = names.quote_subject(sym) if kind == "quotes" else names.signal_subject(sym)
            return kind, sym, subject
        if kind == "candles" and len(parts) == 3:
            sym = check_symbol(parts[1])
            iv = self.store.check_interval(parts[2])
            return kind, sym, names.candle_subject(sym, iv)
        raise UsageError(f"unknown channel {channel[:60]!r}", "channels: quotes:SYM, signals:SYM, candles:SYM:INTERVAL")

    async def subscribe(self, client: Client, channel: str) -> None:
        kind, sym, subject = self.parse(channel)
        await self.store.known(sym)
        channel = f"{kind}:{sym}" + (f":{channel.split(':')[2]}" if kind == "candles" else "")
        if channel in client.channels:
            return
        client.channels.add(channel)
        members = self.members.setdefault(channel, set())
        members.add(client)
        if subject not in self.nats_subs:
            self.nats_subs[subject] = await self.nc.subscribe(subject, cb=self._fan_out(channel, kind))
        await self._snapshot(client, kind, sym, channel)

    async def _snapshot(self, client: Client, kind: str, sym: str, channel: str) -> None:
        if kind == "quotes":
            data = encode(await self.store.quote(sym))
        elif kind == "signals":
            data = encode(await self.store.signals(sym, SNAPSHOT_LIMIT))
        else:
            data = encode(await self.store.candles(sym, channel.split(":")[2], SNAPSHOT_LIMIT))
        client.offer(f"#snap:{channel}", frame("snapshot", channel, data))

    async def unsubscribe(self, client: Client, channel: str) -> None:
        kind, sym, subject = self.parse(channel)
        channel = f"{kind}:{sym}" + (f":{channel.split(':')[2]}" if kind == "candles" else "")
        client.channels.discard(channel)
        members = self.members.get(channel)
        if members is not None:
            members.discard(client)
            if not members:
                del self.members[channel]
                sub = self.nats_subs.pop(subject, None)
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    async def drop(self, client: Client) -> None:
        for channel in list(client.channels):
            with contextlib.suppress(StockctlError):
                await self.unsubscribe(client, channel)
        self.clients.discard(client)

    def _fan_out(self, channel: str, kind: str) -> Callable[[Msg], Any]:
        kind_name = kind[:-1]  # quotes -> quote, signals -> signal, candles -> candle
        conflate = kind in CONFLATED

        async def deliver(msg: Msg) -> None:
            members = self.members.get(channel)
            if not members:
                return
            data = frame(kind_name, channel, msg.data)
            fast = []
            for client in members:
                if client.fast():
                    fast.append(client.ws)
                else:
                    client.offer(channel if conflate else f"#{next(Client._unique)}", data)
            if fast:
                broadcast(fast, data, text=True)
            self.status.incr("frames", len(members))

        return deliver


class WsServer:
    """The WebSocket side: handshake auth, the per-client read loop, heartbeats."""

    def __init__(self, settings: Settings, hub: Hub, keys: KeyRing, r: aioredis.Redis, status: StatusFile) -> None:
        self.s, self.hub, self.keys, self.r, self.status = settings, hub, keys, r, status

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
        try:
            if header:
                client.claims = await check_user(self.r, self.keys, header)
            else:
                raw = await asyncio.wait_for(client.ws.recv(), AUTH_TIMEOUT_S)
                msg = client_msg_decoder.decode(raw)
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
        client.send_now({"type": "welcome", "email": client.claims.email, "expires": client.claims.exp})
        return True

    async def _on_message(self, client: Client, raw: str | bytes) -> None:
        if not client.allow():
            client.violations += 1
            if client.violations > self.s.ws_max_messages_per_s * 2:
                client.close_later(CLOSE_POLICY, "message rate limit exceeded")
            else:
                client.send_now({"type": "error", "error": "rate_limited", "detail": "slow down"})
            return
        try:
            msg = client_msg_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            client.send_now({"type": "error", "error": "bad_message", "detail": str(exc)[:200]})
            return
        reply: dict[str, Any] = {"id": msg.id} if msg.id is not None else {}
        try:
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
            elif msg.op == "auth":
                client.claims = await check_user(self.r, self.keys, f"Bearer {msg.token or ''}")
                client.send_now({"type": "welcome", "email": client.claims.email, "expires": client.claims.exp})
            else:
                raise UsageError(f"unknown op {msg.op[:40]!r}", "ops: auth, subscribe, unsubscribe, ping")
        except (UsageError, NotFound, Unauthorized) as exc:
            client.send_now({"type": "error", "error": exc.__class__.__name__.lower(), "detail": str(exc), **reply})
        except Forbidden as exc:
            client.close_later(CLOSE_FORBIDDEN, str(exc))

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


# --- HTTP ---------------------------------------------------------------------------------


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json")


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def build_app(
    settings: Settings, store: MarketStore, keys: KeyRing, r: aioredis.Redis, http: httpx.AsyncClient
) -> FastAPI:
    app = FastAPI(
        title="stockctl gateway",
        version="1",
        description="Market data over REST; live channels over WebSocket at /ws on the ws port.",
    )

    @app.exception_handler(StockctlError)
    async def _stockctl_error(_: Request, exc: StockctlError) -> JSONResponse:
        status = {UsageError: 400, NotFound: 404, Unauthorized: 401, Forbidden: 403}.get(type(exc), 400)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, type(exc).__name__.lower(), str(exc), headers)

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

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/info")
    async def info() -> dict[str, Any]:
        """Where the WebSocket is and which candle intervals exist (no token needed)."""
        return {"ws_url": settings.ws_url, "candle_intervals": settings.candle_intervals, "version": "1"}

    @app.get("/api/v1/symbols")
    async def symbols(request: Request) -> Response:
        await user(request)
        return json_response(await store.symbols())

    @app.get("/api/v1/prices")
    @app.get("/prices", include_in_schema=False)
    async def prices(request: Request) -> Response:
        """Latest quote of every symbol."""
        await user(request)
        return json_response(await store.quotes())

    @app.get("/api/v1/prices/{symbol}")
    @app.get("/price/{symbol}", include_in_schema=False)
    async def price(symbol: str, request: Request) -> Response:
        await user(request)
        return json_response(await store.quote(symbol))

    @app.get("/api/v1/history/{symbol}")
    async def history(request: Request, symbol: str, limit: int = Query(100, ge=1, le=10_000)) -> Response:
        await user(request)
        return json_response(await store.history(symbol, limit))

    @app.get("/price/history/{symbol}/{limit}", include_in_schema=False)
    async def history_alias(request: Request, symbol: str, limit: int) -> Response:
        await user(request)
        return json_response(await store.history(symbol, limit))

    @app.get("/api/v1/candles/{symbol}")
    async def candles(
        request: Request, symbol: str, interval: str = "1m", limit: int = Query(100, ge=1, le=10_000)
    ) -> Response:
        await user(request)
        return json_response(await store.candles(symbol, interval, limit))

    @app.get("/api/v1/signals/{symbol}")
    async def signals(request: Request, symbol: str, limit: int = Query(50, ge=1, le=10_000)) -> Response:
        await user(request)
        return json_response(await store.signals(symbol, limit))

    async def proxy(request: Request, path: str) -> Response:
        body = await request.body()
        if len(body) > 64 * 1024:
            return error_response(413, "too_large", "request body over 64 KiB")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        headers["X-Forwarded-For"] = request.client.host if request.client else ""
        try:
            upstream = await http.request(
                request.method, path, content=body, headers=headers, params=request.query_params
            )
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
        return await proxy(request, f"/auth/{rest}")

    @app.get("/.well-known/jwks.json", include_in_schema=False)
    async def jwks(request: Request) -> Response:
        return await proxy(request, "/.well-known/jwks.json")

    return app


# --- daemon -------------------------------------------------------------------------------


async def run(settings: Settings) -> None:
    stop = shutdown_event()
    status = StatusFile(settings, "gateway")
    async with AsyncExitStack() as stack:
        # --- startup ---------------------------------------------------------------
        r = redis_client(settings)
        stack.push_async_callback(r.aclose)
        if not await wait_redis(r, stop, log, settings.effective_redis_url):
            return
        nc = await connect_nats(settings, "gateway", stop, log)
        if nc is None:
            return
        stack.push_async_callback(nc.drain)
        keys = KeyRing(settings.effective_auth_url)
        if not await keys.load(stop):
            return
        http = httpx.AsyncClient(base_url=settings.effective_auth_url, timeout=10)
        stack.push_async_callback(http.aclose)
        store = MarketStore(r, settings.candle_intervals)
        hub = Hub(nc, store, status)
        ws_server = WsServer(settings, hub, keys, r, status)
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
        http_server = UvicornServer(build_app(settings, store, keys, r, http), settings.host, settings.gateway_port)
        serve_task = asyncio.create_task(http_server.serve())
        await http_server.wait_started(serve_task)
        status.ready = True
        status.info = {"http": settings.gateway_url, "ws": settings.ws_url, "clients": 0}
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


if __name__ == "__main__":
    main("gateway", run)
