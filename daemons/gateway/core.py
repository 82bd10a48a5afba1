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
from stockctl.runtime.ops import BodyLimit, HttpMetrics, start_ops
from stockctl.runtime.service import (
    StatusFile,
    UvicornServer,
    main,
    open_nats,
    open_redis,
    shutdown_event,
)
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
