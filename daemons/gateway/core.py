"""The gateway daemon: start-up, serving and shutdown of the clients' door.

Start-up, in order: Redis, NATS, the auth daemon's signing keys (it waits for auth), the
matching client, the WebSocket server on ``ws_port`` (:mod:`daemons.gateway.ws`) and the HTTP
app on ``gateway_port`` (:mod:`daemons.gateway.rest` on uvicorn); ready once both listen.

Serving, until SIGTERM or SIGINT: beside the two servers run the WebSocket watchdog, the
disabled-account check and the status file.

Shutdown: WebSocket clients are closed with 1001, uvicorn finishes its requests, exit 0. If
the HTTP server stops by itself first (uvicorn crashed or returned), the daemon shuts down
the same way and exits 1, so that the supervisor restarts it.

The gateway holds no state of its own: any number of them serve the same data.
"""

from __future__ import annotations

import asyncio
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
from stockctl.runtime.daemon import main, shutdown_event
from stockctl.runtime.http import BodyLimit, UvicornServer
from stockctl.runtime.ops import HttpMetrics, start_ops
from stockctl.runtime.status import StatusFile
from stockctl.settings import Settings
from stockctl.wire import names

log = logging.getLogger("stockctl.gateway")


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
        auth = AuthProxy(settings, http, proxy_secret)
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
            HttpMetrics(BodyLimit(build_app(settings, store, exchange, keys, r, alerts, auth)), ops),
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
        watchdog_task = asyncio.create_task(ws_server.watchdog(stop))
        stopping = asyncio.create_task(stop.wait())
        # uvicorn ends only when told to: a serve task that ends before a signal is a dead HTTP
        # side, and a gateway serving WebSocket alone would look healthy to the supervisor.
        await asyncio.wait({stopping, serve_task, watchdog_task}, return_when=asyncio.FIRST_COMPLETED)
        http_died = serve_task.done() and not stop.is_set()
        stop.set()

        # --- shutdown --------------------------------------------------------------
        for client in list(hub.clients):
            client.close_later(1001, "gateway shutting down")
        http_server.should_exit = True
        if http_died:
            exc = None if serve_task.cancelled() else serve_task.exception()
            log.error(
                "the HTTP server stopped by itself (%s); exiting so that the gateway is restarted",
                "no error" if exc is None else f"{exc.__class__.__name__}: {exc}",
                exc_info=exc,
            )
        else:
            await serve_task
        await asyncio.gather(watchdog_task, status_task, disabled_task, stopping)
        if http_died:
            raise SystemExit(1)


if __name__ == "__main__":
    main("gateway", run)
