"""Operability shared by every daemon: health probes, Prometheus metrics, structured logs.

Each daemon serves, on its own loopback port (``metrics_port`` + its place in ``DAEMONS``):

- ``/healthz``: liveness. It answers from the daemon's event loop, so a wedged loop fails
  the probe by timing out.
- ``/readyz``: readiness. 200 once the daemon is ready and every dependency check (NATS
  connected, Redis answering, ...) passes; 503 with the failing checks otherwise.
- ``/metrics``: Prometheus text. Every ``StatusFile`` counter becomes
  ``stockctl_<counter>_total``, plus gauges (event-loop lag, consumer backlog, clients) and
  the histograms a daemon registers (order ack latency, tick-to-commit latency, HTTP).

Logs: ``--log-format json`` writes one JSON object per line; a request id set with
:func:`bind` (the gateway takes ``X-Request-ID`` or makes one, and passes it on to auth and,
in a command header, to matching) is added to every line logged while handling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stockctl.settings import DAEMONS, Settings

log = logging.getLogger("stockctl.ops")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_ID_HEADER = "X-Request-ID"
"""HTTP header (and NATS command header) carrying the request id across daemons."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- request ids and structured logs ------------------------------------------------------

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("stockctl_log_context", default=None)


def new_request_id() -> str:
    return secrets.token_hex(8)


def clean_request_id(value: str | None) -> str:
    """A caller's request id if it is short and plain, else a fresh one (it ends up in logs)."""
    if value and len(value) <= 64 and all(c.isalnum() or c in "-_.:" for c in value):
        return value
    return new_request_id()


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (request_id, order_id, user, ...) to every log line in this context."""
    current = _context.get() or {}
    token = _context.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bound(name: str) -> Any:
    """A field bound in the current context, or ``None``."""
    return (_context.get() or {}).get(name)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, daemon, logger, msg, the bound fields, exc."""

    def __init__(self, daemon: str) -> None:
        super().__init__()
        self.daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "daemon": self.daemon,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_context.get() or {})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with bound fields appended as ``key=value``."""

    def __init__(self, daemon: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)-7s {daemon}: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _context.get()
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def configure_logging(name: str, level: str, fmt: str = "text") -> logging.Logger:
    """Logs on stderr (the supervisor sends them to ``logs/<name>.log``), text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(name) if fmt == "json" else TextFormatter(name))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # nats-py logs every reconnect attempt at ERROR; we log state changes ourselves.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    return logging.getLogger(f"stockctl.{name}")


# --- metrics --------------------------------------------------------------------------------


class _StatusCollector(Collector):
    """The daemon's ``StatusFile`` counters and numeric info as Prometheus metrics."""

    def __init__(self, daemon: str, status: Any, gauges: dict[str, Callable[[], float]]) -> None:
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

    def __init__(self, settings: Settings, daemon: str, status: Any) -> None:
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
        from stockctl.runtime.service import UvicornServer

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


MAX_BODY_BYTES = 1024 * 1024
"""No HTTP request body larger than this is read into memory (endpoints set tighter limits)."""


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before the app reads it.

    A declared ``Content-Length`` is refused at once; a chunked body is read up to the limit
    and then refused, so an endless upload costs at most ``limit`` bytes of memory.
    """

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": "too_large", "detail": f"request body over {self.limit} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


#: ``{symbol:path}`` in a route template is labelled ``{symbol}``: the convertor is not the API.
CONVERTOR = re.compile(r"\{(\w+):\w+\}")


class HttpMetrics:
    """ASGI middleware: request id in and out (``X-Request-ID``), bound for every log line,
    and a latency histogram per method, route template and status."""

    def __init__(self, app: Any, ops: Ops) -> None:
        self.app = app
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


async def start_ops(stack: contextlib.AsyncExitStack, settings: Settings, daemon: str, status: Any) -> Ops:
    """Create and start a daemon's ops listener; stopped when ``stack`` unwinds."""
    ops = Ops(settings, daemon, status)
    await ops.start()
    stack.push_async_callback(ops.stop)
    return ops
