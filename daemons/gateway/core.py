"""The gateway daemon: start-up, serving and shutdown of the clients' door.

Start-up, in order: Redis, NATS, the auth daemon's signing keys (it waits for auth), the
matching client, the WebSocket server on ``ws_port`` (:mod:`daemons.gateway.ws`) and the HTTP
app on ``gateway_port`` (:mod:`daemons.gateway.rest` on uvicorn); ready once both listen.

Serving, until SIGTERM or SIGINT: beside the two servers run the WebSocket watchdog, the
disabled-account check, the JWKS refresh and the status file.

Shutdown: WebSocket clients are closed with 1001, uvicorn finishes its requests, exit 0. If
the HTTP server stops by itself first (uvicorn crashed or returned), the daemon shuts down
the same way and exits 1, so that the supervisor restarts it.

The gateway holds no state of its own: any number of them serve the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

import httpx
import websockets

from daemons.gateway.auth_proxy import AuthProxy
from daemons.gateway.exchange_api import ExchangeApi
from daemons.gateway.fanout import Hub
from daemons.gateway.rest import build_app
from daemons.gateway.tokens import KeyRing
from daemons.gateway.ws import WsServer
from stockctl.alerts.store import AlertStore
from stockctl.auth.proxies import load_proxy_secret
from stockctl.marketdata.store import MarketStore
from stockctl.runtime.connections import open_nats, open_redis
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.http import BodyLimit, UvicornServer
from stockctl.runtime.ops import HttpMetrics
from stockctl.runtime.retry import Stopped
from stockctl.settings import Settings
from stockctl.wire import names

log = logging.getLogger("stockctl.gateway")


class Gateway(Daemon):
    """The clients' door: the WebSocket server and the HTTP app, over Redis, NATS and auth."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.hub: Hub | None = None
        self.http_server: UvicornServer | None = None
        self.serve_task: asyncio.Task[None] | None = None

    async def startup(self, stack: AsyncExitStack) -> None:
        settings, ops, status = self.settings, self.ops, self.status
        r = await open_redis(stack, ops, self.stop, log)
        nc = await open_nats(stack, ops, self.stop, log)
        keys = KeyRing.for_settings(settings)
        # Fetched while the rest starts: auth, started beside us, is often not listening yet.
        keys_loaded = asyncio.ensure_future(keys.load(self.stop))
        stack.callback(keys_loaded.cancel)
        proxy_secret = load_proxy_secret(settings.secrets_dir)  # proves to auth that X-Forwarded-For is ours
        http = httpx.AsyncClient(base_url=settings.effective_auth_url, timeout=10)
        stack.push_async_callback(http.aclose)
        auth = AuthProxy(settings, http, proxy_secret)
        store = MarketStore(r, settings.candle_intervals)
        exchange = ExchangeApi(settings, nc, nc.jetstream(), r)
        exchange.ack_seconds = ops.histogram("order_ack_seconds", "Order or cancel: submitted to answered")
        await exchange.start()
        alerts = AlertStore(r, settings.alerts_per_user, publish=nc.publish)
        self.hub = Hub(nc, store, exchange, status, alerts)
        ws_server = WsServer(settings, self.hub, keys, r, status)
        await nc.subscribe(names.ACCOUNT_DISABLED_SUBJECT, cb=ws_server.on_disabled)
        self.spawn(ws_server.watch_disabled(self.stop), "disabled-account check")
        app = HttpMetrics(BodyLimit(build_app(settings, store, exchange, keys, r, alerts, auth, ws_server)), ops)
        if not await keys_loaded:  # before any listener: every token is checked with these keys
            raise Stopped
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
        self.http_server = UvicornServer(
            app,
            settings.host,
            settings.gateway_port,
            ws="websockets-sansio",  # the seed clients' /ws and the full protocol's /api/v1/ws
        )
        self.serve_task = self.spawn(self._serve_http(), "http")
        await self.http_server.wait_started(self.serve_task)
        ws_server.heap.startup()
        status.info |= {"http": settings.gateway_url, "ws": settings.ws_url, "clients": 0}
        self.spawn(ws_server.watchdog(self.stop), "WebSocket watchdog")
        self.spawn(keys.keep_fresh(self.stop), "JWKS refresh")  # rotated keys in, retired ones out
        log.info("serving HTTP on %s and WebSocket on %s", settings.gateway_url, settings.ws_url)

    async def _serve_http(self) -> None:
        """uvicorn ends only when told to: ending before that is a dead HTTP side, and a gateway
        serving WebSocket alone would look healthy to the supervisor (the base exits 1)."""
        assert self.http_server is not None
        try:
            await self.http_server.serve()
        except Exception as exc:
            raise RuntimeError(f"the HTTP server stopped by itself ({exc.__class__.__name__}: {exc})") from exc
        if not self.stop.is_set():
            raise RuntimeError("the HTTP server stopped by itself (no error)")

    async def shutdown(self) -> None:
        if self.hub is not None:
            for client in list(self.hub.clients):
                client.close_later(1001, "gateway shutting down")
        if self.http_server is not None and self.serve_task is not None:
            self.http_server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self.serve_task  # uvicorn finishes its requests


DAEMON = Gateway

if __name__ == "__main__":
    main("gateway", Gateway)
