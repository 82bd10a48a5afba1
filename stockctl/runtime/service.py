"""What every daemon needs: logging, signals, status file, NATS and Redis with reconnects.

A daemon module exposes ``async def run(settings) -> None``; :func:`main` wraps it with
logging and ``asyncio.run`` so ``python -m daemons <name>`` is the whole entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nats
import redis.asyncio as aioredis
import uvicorn
from nats.aio.client import Client as NATS
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from stockctl.runtime.ops import Ops, configure_logging
from stockctl.settings import Settings, mask_url

log = logging.getLogger("stockctl")

T = TypeVar("T")


def shutdown_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: the daemon's cue to drain and exit 0."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, event.set)
    return event


class StateLog:
    """Logs a connection's state only when it changes, never once per retry."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log, self._what, self._state = logger, what, None

    HEALTHY = frozenset({"connected", "reconnected", "ok", "on time"})

    def set(self, state: str, detail: str = "") -> None:
        previous, self._state = self._state, state
        if state == previous:
            return
        if state in self.HEALTHY:
            if previous is None and state != "connected":
                return  # healthy from the start: nothing worth a line
            level = logging.INFO
        else:
            level = logging.WARNING
        self._log.log(level, "%s %s%s", self._what, state, f": {detail}" if detail else "")

    @property
    def state(self) -> str | None:
        return self._state


class StatusFile:
    """``run/<name>.json``: readiness, counters and rates, rewritten every second.

    The supervisor waits on ``ready`` and ``stockctl status`` shows the rates.
    """

    def __init__(self, settings: Settings, name: str) -> None:
        self.path: Path = settings.run_dir / f"{name}.json"
        self.name = name
        self.ready = False
        self.counters: dict[str, int] = {}
        self.info: dict[str, Any] = {}
        self._rates: dict[str, float] = {}
        self._last: tuple[float, dict[str, int]] = (time.monotonic(), {})
        self.started = time.time()

    def incr(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def write(self) -> None:
        now = time.monotonic()
        then, before = self._last
        if now - then >= 0.5:
            self._rates = {k: round((v - before.get(k, 0)) / (now - then), 1) for k, v in self.counters.items()}
            self._last = (now, dict(self.counters))
        doc = {
            "name": self.name,
            "pid": os.getpid(),
            "ready": self.ready,
            "started": self.started,
            "updated": time.time(),
            "counters": self.counters,
            "rates": self._rates,
            "info": self.info,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=str))
        tmp.replace(self.path)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


async def backoff_sleep(attempt: int, stop: asyncio.Event, cap: float = 5.0) -> None:
    """Sleep ``min(cap, 0.1 * 2**attempt)`` seconds, or less if asked to stop."""
    delay = min(cap, 0.1 * (2 ** min(attempt, 10)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


async def connect_nats(
    settings: Settings,
    name: str,
    stop: asyncio.Event,
    logger: logging.Logger,
    on_reconnect: Callable[[], None] | None = None,
) -> NATS | None:
    """Connect, retrying with backoff until it works or ``stop`` is set (then None).

    Once connected nats-py reconnects by itself forever; the callbacks only log
    state changes. The URL carries the credentials; only its masked form is logged.
    """
    state = StateLog(logger, f"NATS {mask_url(settings.effective_nats_url)}")

    async def disconnected() -> None:
        if not stop.is_set():  # draining at shutdown also disconnects
            state.set("disconnected", "retrying")

    async def reconnected() -> None:
        state.set("reconnected")
        if on_reconnect is not None:
            on_reconnect()

    async def error(exc: Exception) -> None:
        # nats-py retries a first connect inside nats.connect and reports each failure only
        # here: say once why we are not connected (a wrong password above all), not per try.
        if "authorization violation" in str(exc).lower():
            state.set("refused", f"{exc}; check the user and password in the URL (STOCKCTL_NATS_URL)")
        elif state.state in (None, "unreachable"):
            state.set("unreachable", f"{exc.__class__.__name__}: {exc}; retrying")
        else:
            logger.debug("nats error: %s", exc)

    attempt = 0
    while not stop.is_set():
        try:
            nc = await nats.connect(
                settings.effective_nats_url,
                name=f"stockctl-{name}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                allow_reconnect=True,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
                pending_size=64 * 1024 * 1024,
            )
        except Exception as exc:
            state.set("unreachable", f"{exc.__class__.__name__}: {exc}; retrying")
            await backoff_sleep(attempt, stop)
            attempt += 1
            continue
        state.set("connected")
        return nc
    return None


async def until_ready(
    stop: asyncio.Event, logger: logging.Logger, what: str, step: Callable[[], Awaitable[T]]
) -> T | None:
    """Run ``step`` until it succeeds (its result) or ``stop`` is set (None), with backoff.

    For start-up work against a server that may still be starting (JetStream streams,
    first queries): the first failure is logged, not every retry.
    """
    attempt = 0
    while not stop.is_set():
        try:
            return await step()
        except Exception as exc:  # not ready yet: retry
            if attempt == 0:
                logger.warning("%s not ready (%s); retrying", what, exc)
            await backoff_sleep(attempt, stop)
            attempt += 1
    return None


def redis_client(settings: Settings) -> aioredis.Redis:
    """A pooled async Redis client that retries commands across brief outages."""
    # A blocking pool: a burst of requests (thousands of WebSocket clients connecting at
    # once) waits for a connection instead of failing with "too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.effective_redis_url,
        max_connections=64,
        timeout=10,
        decode_responses=False,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


async def wait_redis(client: aioredis.Redis, stop: asyncio.Event, logger: logging.Logger, url: str) -> bool:
    """Block until Redis answers PING (True) or ``stop`` is set (False)."""
    state = StateLog(logger, f"Redis {mask_url(url)}")
    attempt = 0
    while not stop.is_set():
        try:
            await client.ping()
        except Exception as exc:
            state.set("unreachable", f"{exc.__class__.__name__}: {exc}; retrying")
            await backoff_sleep(attempt, stop)
            attempt += 1
            continue
        state.set("connected")
        return True
    return False


async def open_redis(
    stack: contextlib.AsyncExitStack, ops: Ops, stop: asyncio.Event, logger: logging.Logger
) -> aioredis.Redis | None:
    """The daemon's Redis client: closed with ``stack``, a readiness check, and answering
    (None if asked to stop first)."""
    r = redis_client(ops.settings)
    stack.push_async_callback(r.aclose)
    ops.check("redis", r.ping)
    return r if await wait_redis(r, stop, logger, ops.settings.effective_redis_url) else None


async def open_nats(
    stack: contextlib.AsyncExitStack,
    ops: Ops,
    stop: asyncio.Event,
    logger: logging.Logger,
    on_reconnect: Callable[[], None] | None = None,
) -> NATS | None:
    """The daemon's NATS connection: drained with ``stack`` and a readiness check (None if
    asked to stop before it connected)."""
    nc = await connect_nats(ops.settings, ops.daemon, stop, logger, on_reconnect=on_reconnect)
    if nc is None:
        return None
    stack.push_async_callback(nc.drain)
    ops.check("nats", lambda: nc.is_connected)
    return nc


FAILPOINT_EXIT = 86
_failpoint_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Die here, abruptly, if ``STOCKCTL_FAILPOINTS`` names this point.

    The variable is a comma-separated list of ``name`` (the first pass) or ``name@N`` (the
    Nth pass). Fault-injection tests use it to crash a daemon at an exact moment, as kill -9
    there would, instead of hoping a timed kill lands in a window of microseconds. Unset in
    production, where this is one dictionary lookup.
    """
    points = os.environ.get("STOCKCTL_FAILPOINTS")
    if not points:
        return
    hits = _failpoint_hits[name] = _failpoint_hits.get(name, 0) + 1
    for point in points.split(","):
        target, _, nth = point.strip().partition("@")
        if target == name and hits == (int(nth) if nth.isdigit() else 1):
            logging.getLogger("stockctl").error("failpoint %s (pass %d): exiting abruptly", name, hits)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(FAILPOINT_EXIT)


class HeapFreezer:
    """Keeps long-lived objects (connections, books) out of full garbage collections.

    A full collection walks every tracked object; with 10,000 WebSocket clients that is
    millions of objects and pauses of ~0.4 s in which no frame is sent. Freezing moves
    what exists now into the permanent generation, which collections skip. Objects of
    clients that later leave are still freed by reference counting; only their cycles
    wait, so when the population halves we unfreeze and let one collection reclaim them.
    """

    def __init__(self, step: int = 500) -> None:
        self.step = step
        self.frozen_at = 0
        self.freezes = 0

    def startup(self) -> None:
        """Freeze what start-up built (modules, apps, clients): it lives as long as the process."""
        gc.collect()
        gc.freeze()

    def update(self, population: int) -> None:
        """Called periodically with the number of long-lived things (clients, orders)."""
        if population >= self.frozen_at + self.step:
            gc.freeze()
            self.frozen_at, self.freezes = population, self.freezes + 1
        elif population < self.frozen_at // 2:
            gc.unfreeze()
            self.frozen_at = population


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (a gateway holds a socket per client)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def main(name: str, run: Callable[[Settings], Awaitable[None]]) -> None:
    """Entry point of a daemon process."""
    raise_fd_limit()
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"{name}: bad setting {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        sys.exit(2)
    settings.ensure_dirs()
    logger = configure_logging(name, settings.log_level, settings.log_format)
    logger.info("starting (pid %d)", os.getpid())
    try:
        import uvloop  # a faster event loop: the daemons are I/O-bound Python

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(run(settings))
    logger.info("stopped")


class UvicornServer(uvicorn.Server):
    """uvicorn driven by the daemon's shutdown event instead of its own signal handlers.

    uvicorn re-raises a captured SIGTERM after serving, which would turn a graceful
    stop into death by signal; the daemon owns signals and sets ``should_exit``.
    """

    def __init__(self, app: Any, host: str, port: int, ws: str = "none") -> None:
        # ws="none" unless the app serves WebSocket routes (the gateway's seed door does).
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                server_header=False,
                proxy_headers=False,  # X-Forwarded-For is believed only as stockctl.proxies says
                ws=ws,
                ws_max_size=16 * 1024,
                limit_concurrency=20_000,
                timeout_graceful_shutdown=5,
            )
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def wait_started(self, task: asyncio.Task[None]) -> None:
        """Return once listening; re-raise why not if serving ended first (a port in use)."""
        while not self.started:
            if task.done():
                task.result()
                raise RuntimeError("HTTP server stopped before it started")
            await asyncio.sleep(0.02)
