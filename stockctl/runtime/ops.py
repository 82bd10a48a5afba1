"""Operability shared by every daemon: health probes and Prometheus metrics.

Each daemon serves, on its own loopback port (``metrics_port`` + its place in ``DAEMONS``):

- ``/healthz``: liveness. It answers from the daemon's event loop, so a wedged loop fails
  the probe by timing out.
- ``/readyz``: readiness. 200 once the daemon is ready and every dependency check (NATS
  connected, Redis answering, ...) passes; 503 with the failing checks otherwise.
- ``/metrics``: Prometheus text. Every ``StatusFile`` counter becomes
  ``stockctl_<counter>_total``, plus gauges (event-loop lag, consumer backlog, clients) and
  the histograms a daemon registers (order ack latency, tick-to-commit latency, HTTP).

:class:`HttpMetrics` is the ASGI middleware that times and counts HTTP requests and carries their request
id (:mod:`stockctl.runtime.logs`) in and out. Logs themselves are :mod:`stockctl.runtime.logs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stockctl.runtime.http import UvicornServer
from stockctl.runtime.logs import REQUEST_ID_HEADER, bind, clean_request_id
from stockctl.runtime.status import StatusFile
from stockctl.settings import DAEMONS, Settings

log = logging.getLogger("stockctl.ops")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- metrics --------------------------------------------------------------------------------


class _StatusCollector(Collector):
    """The daemon's ``StatusFile`` counters and numeric info as Prometheus metrics."""

    def __init__(self, daemon: str, status: StatusFile, gauges: dict[str, Callable[[], float]]) -> None:
        self.daemon, self.status, self.gauges = daemon, status, gauges

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("stockctl_ready", "1 when the daemon is ready", labels=["daemon"])
        up.add_metric([self.daemon], 1.0 if self.status.ready else 0.0)
        yield up
        started = GaugeMetricFamily("stockctl_start_time_seconds", "Unix time the daemon started", labels=["daemon"])
        started.add_metric([self.daemon], self.status.started)
        yield started
        for key, value in sorted(self.status.counters.items()):
            family = CounterMetricFamily(f"stockctl_{key}", f"{key} counted by the daemon", labels=["daemon"])
            family.add_metric([self.daemon], value)
            yield family
        numeric = {k: v for k, v in self.status.info.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for key, value in sorted(numeric.items()):
            family = GaugeMetricFamily(f"stockctl_{key}", f"{key} (current)", labels=["daemon"])
            family.add_metric([self.daemon], value)
            yield family
        for key, read in sorted(self.gauges.items()):
            family = GaugeMetricFamily(f"stockctl_{key}", f"{key} (current)", labels=["daemon"])
            family.add_metric([self.daemon], float(read()))
            yield family


class Ops:
    """One daemon's health checks, metrics registry and ops HTTP listener."""

    def __init__(self, settings: Settings, daemon: str, status: StatusFile) -> None:
        self.settings, self.daemon, self.status = settings, daemon, status
        self.registry = CollectorRegistry(auto_describe=False)
        self.checks: dict[str, Callable[[], Awaitable[bool] | bool]] = {}
        self.gauges: dict[str, Callable[[], float]] = {}
        self.loop_lag = 0.0
        self.gauges["event_loop_lag_seconds"] = lambda: self.loop_lag
        self.registry.register(_StatusCollector(daemon, status, self.gauges))
        ProcessCollector(registry=self.registry)  # cpu, memory, open fds of this process
        self.url: str | None = None
        self._server: Any = None
        self._tasks: list[asyncio.Task[Any]] = []

    # --- what daemons register --------------------------------------------------------

    def check(self, name: str, probe: Callable[[], Awaitable[bool] | bool]) -> None:
        """A readiness dependency: ``probe()`` true means healthy."""
        self.checks[name] = probe

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time, e.g. a consumer backlog."""
        self.gauges[name] = read

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...] = LATENCY_BUCKETS, **kw: Any) -> Histogram:
        return Histogram(f"stockctl_{name}", doc, registry=self.registry, buckets=buckets, **kw)

    def labelled_gauge(self, name: str, doc: str, labels: list[str]) -> Gauge:
        return Gauge(f"stockctl_{name}", doc, labels, registry=self.registry)

    # --- serving ------------------------------------------------------------------------

    async def readiness(self) -> tuple[bool, dict[str, bool]]:
        results: dict[str, bool] = {"ready": bool(self.status.ready)}
        for name, probe in self.checks.items():
            try:
                value = probe()
                if asyncio.iscoroutine(value):
                    value = await asyncio.wait_for(value, 2.0)
                results[name] = bool(value)
            except Exception:  # a probe that fails in any way is a failing dependency
                results[name] = False
        return all(results.values()), results

    def app(self) -> Starlette:
        async def healthz(_: Request) -> Response:
            return JSONResponse({"status": "ok", "daemon": self.daemon, "pid": os.getpid()})

        async def readyz(_: Request) -> Response:
            ok, results = await self.readiness()
            return JSONResponse({"ready": ok, "daemon": self.daemon, "checks": results}, 200 if ok else 503)

        async def metrics(_: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=PROMETHEUS_TEXT)

        return Starlette(
            routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)],
        )

    def port(self) -> int:
        base = self.settings.metrics_port
        if base == 0:
            return 0
        return base + DAEMONS.index(self.daemon) if self.daemon in DAEMONS else 0

    async def start(self) -> None:
        """Listen (on any free port if ours is busy) and watch the event loop's lag."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.settings.host, self.port()))
        except OSError as exc:
            log.warning("ops port %d unavailable (%s); listening on a free port instead", self.port(), exc.strerror)
            sock.bind((self.settings.host, 0))
        sock.listen(128)
        server = UvicornServer(self.app(), self.settings.host, sock.getsockname()[1])
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await server.wait_started(task)
        self.url = f"http://{self.settings.host}:{sock.getsockname()[1]}"
        self._server = server
        self._tasks = [task, asyncio.create_task(self._watch_loop())]
        self.status.info["ops"] = self.url

    async def _watch_loop(self) -> None:
        """Event-loop lag: how late a 0.5 s sleep wakes up (a blocked loop shows here)."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.5)
            self.loop_lag = max(0.0, loop.time() - before - 0.5)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


#: ``{symbol:path}`` in a route template is labelled ``{symbol}``: the convertor is not the API.
CONVERTOR = re.compile(r"\{(\w+):\w+\}")


class HttpMetrics:
    """ASGI middleware: request id in and out (``X-Request-ID``), bound for every log line,
    and a latency histogram per method, route template and status."""

    def __init__(self, app: Any, ops: Ops) -> None:
        self.app = app
        self.status = ops.status  # counts requests: `stockctl status` shows each gateway's rate
        self.seconds = ops.histogram(
            "http_request_seconds", "HTTP request latency", labelnames=("method", "route", "status")
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.lower().encode())
        request_id = clean_request_id(raw.decode("latin-1") if raw else None)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with bind(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                # The route's template, never the raw path: one series per endpoint, not per URL.
                template = CONVERTOR.sub(r"{\1}", getattr(route, "path", None) or "unmatched")
                self.seconds.labels(scope.get("method", "?"), template, str(status)).observe(
                    time.perf_counter() - started
                )
                self.status.incr("requests")


async def start_ops(stack: contextlib.AsyncExitStack, settings: Settings, daemon: str, status: StatusFile) -> Ops:
    """Create and start a daemon's ops listener; stopped when ``stack`` unwinds."""
    ops = Ops(settings, daemon, status)
    await ops.start()
    stack.push_async_callback(ops.stop)
    return ops
