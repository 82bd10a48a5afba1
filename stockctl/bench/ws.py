"""``stockctl bench ws``: many authenticated WebSocket clients on the gateway, measured.

Like ``bench ticks``, everything runs on private servers in a temporary directory:

* a nats-server (JetStream) and a valkey-server on free ports (:mod:`stockctl.instance.infra`);
* the real processor, publisher (``--rate`` ticks/s per symbol), auth and gateway
  daemons (``python -m daemons NAME``), configured through :meth:`Settings.to_env`;
* one bench user, registered over HTTP through the gateway; its access token (valid
  for the whole run) authenticates every client;
* ``--workers`` client processes (``python -m stockctl.bench.ws_client``), each with its own
  event loop and a share of the connections. A client opens ``/ws``, sends
  ``{"op":"auth","token":...}``, waits for ``welcome``, subscribes to its channels
  (``quotes:SYM``, round-robin over the symbols) and waits for ``subscribed``.

The clients speak just enough RFC 6455 to be cheap: server frames are parsed in place
and a quote's latency (receipt time - the tick's ``ts``) is read from the raw frame
without decoding the JSON, so 10,000 connections fit beside the gateway on two cores.
Pings are answered, a close frame is recorded with its code and reason.

Once every client is connected the quotes received in a ``--seconds`` window are
counted and timed (the window is wall-clock, shared by all processes). Quotes seen on
NATS in the same window say how many frames the clients should have received.
Workers report to this process over a loopback TCP connection, one JSON line per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nats.aio.msg import Msg

from stockctl.bench.cpu import CpuMeter, kernel_ticks
from stockctl.bench.kit import (
    BenchError,
    PrivateStack,
    ProgressFn,
    clean_env,
    close_nats,
    connect_nats,
    machine_doc,
    no_progress,
    percentile,
    register_user,
    run_private,
)
from stockctl.bench.ws_client import _NEVER, BUCKET_NS, CONNECT_TIMEOUT, client_frame
from stockctl.errors import UsageError
from stockctl.instance import launch
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.symbols import is_symbol

DEFAULT_CLIENTS = 1_000
DEFAULT_SECONDS = 20.0
DEFAULT_RATE = 5.0
DEFAULT_SYMBOLS: tuple[str, ...] = ("AAPL", "GOOGL", "AMZN", "MSFT", "TSLA")
DEFAULT_WORKERS = 2
DEFAULT_CONCURRENCY = 50
QUICK_CLIENTS = 50
QUICK_SECONDS = 4.0

TARGET_CLIENTS = 10_000
TARGET_P99_MS = 250.0
"""p99 tick -> client latency, below, with ``TARGET_CLIENTS`` clients at ``TARGET_RATE``."""
TARGET_RATE = 5.0
KEEP_UP_FRACTION = 0.95
"""Delivery keeps up when clients receive at least this share of the quotes published to them."""

DAEMONS = ("processor", "publisher", "auth", "gateway")
DAEMON_START_TIMEOUT = 60.0
CONNECT_BUDGET_S = 60.0
CONNECT_BUDGET_PER_CLIENT_S = 0.01
"""Connecting all clients may take this long (plus this much per client), then the rest are not tried."""
CONTROL_LINE_LIMIT = 64 * 1024 * 1024
"""Longest line a worker may send (its connect times and latency histogram are one line each)."""
SETTLE_S = 1.0
"""Pause between the last connection and the measurement window (snapshots, backlogs)."""

ProgressMap = Callable[[dict[int, dict[str, Any]]], None]
"""Called with the latest progress line of each worker."""


# --- results -----------------------------------------------------------------------------


@dataclass
class WsBenchOptions:
    """What ``bench ws`` runs: how many clients, on which channels, for how long."""

    clients: int = DEFAULT_CLIENTS
    seconds: float = DEFAULT_SECONDS
    rate: float = DEFAULT_RATE
    """Ticks (so quotes) per second per symbol, from the publisher."""
    symbols: list[str] = field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    channels_per_client: int = 1
    workers: int = DEFAULT_WORKERS
    concurrency: int = DEFAULT_CONCURRENCY
    """Connections being opened at once, all workers together."""

    @classmethod
    def quick(cls) -> WsBenchOptions:
        return cls(clients=QUICK_CLIENTS, seconds=QUICK_SECONDS)

    def check(self) -> None:
        if self.clients < 1:
            raise UsageError("--clients must be at least 1")
        if self.seconds <= 0:
            raise UsageError("--seconds must be above 0")
        if not 0 < self.rate <= 1000:
            raise UsageError("--rate must be above 0 and at most 1000 ticks/s per symbol")
        if not self.symbols:
            raise UsageError("--symbols is empty", "e.g. --symbols AAPL,MSFT")
        for sym in self.symbols:
            if not is_symbol(sym):
                raise UsageError(f"bad symbol {sym!r} in --symbols", "use A-Z, 0-9, _ and . - / between them")
        if not 1 <= self.channels_per_client <= len(self.symbols):
            raise UsageError(
                f"--channels-per-client must be 1 to {len(self.symbols)} (the number of symbols)",
                "add symbols with --symbols",
            )
        if self.workers < 1:
            raise UsageError("--workers must be at least 1")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")


def parse_symbols(text: str) -> list[str]:
    """``"aapl, msft"`` -> ``["AAPL", "MSFT"]`` (order kept, de-duplicated)."""
    out: list[str] = []
    for part in text.split(","):
        sym = part.strip().upper()
        if sym and sym not in out:
            out.append(sym)
    return out


@dataclass
class WsBenchResult:
    """What ``bench ws`` measured: connections, delivery, latency, drops, and where the CPU went."""

    clients: int
    connected: int
    """Clients that connected, authenticated and subscribed."""
    failed: int
    """Clients that could not connect, authenticate or subscribe."""
    closed: int
    """Clients connected, then closed before the end of the window (by the gateway or the network)."""
    seconds: float
    rate: float
    symbols: list[str]
    channels_per_client: int
    workers: int
    concurrency: int
    connect_s: float
    """Wall time to connect + authenticate + subscribe every client."""
    connect_p50_ms: float | None
    connect_p99_ms: float | None
    connect_max_ms: float | None
    quotes: int
    """Quote frames received by all clients in the window."""
    expected: int
    """Quote frames the clients should have received: quotes on NATS in the window x subscribers."""
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    client_lag_p99_ms: float | None = None
    """p99 of how late the client workers' event loops woke up: their own share of the latency."""
    client_lag_max_ms: float | None = None
    gateway_frames_per_s: float | None = None
    """Frames the gateway handed to clients (its own counter), per second of the window."""
    gateway_clients: int | None = None
    close_reasons: dict[str, int] = field(default_factory=dict)
    fail_reasons: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used in the window, per process (``workers``: all client workers together); ``irq``:
    interrupts, softirqs (loopback TCP) and steal, charged to no process; ``other``: the rest of the machine."""
    elapsed_s: float = 0.0

    @property
    def dropped(self) -> int:
        return self.failed + self.closed

    @property
    def msgs_per_s(self) -> float:
        return self.quotes / self.seconds if self.seconds > 0 else 0.0

    @property
    def expected_msgs_per_s(self) -> float:
        return self.expected / self.seconds if self.seconds > 0 else 0.0

    @property
    def nominal_msgs_per_s(self) -> float:
        """What the publisher's rate promises: connected x rate x channels per client."""
        return self.connected * self.rate * self.channels_per_client

    @property
    def delivered_ratio(self) -> float | None:
        return self.quotes / self.expected if self.expected else None

    @property
    def kept_up(self) -> bool:
        ratio = self.delivered_ratio
        return ratio is not None and ratio >= KEEP_UP_FRACTION

    def targets(self) -> dict[str, Any]:
        checks = {
            "clients_met": self.connected >= TARGET_CLIENTS,
            "rate_met": self.rate >= TARGET_RATE,
            "p99_met": self.p99_ms is not None and self.p99_ms < TARGET_P99_MS,
            "dropped_met": self.dropped == 0,
            "kept_up_met": self.kept_up,
        }
        return {
            "clients_min": TARGET_CLIENTS,
            "rate_min": TARGET_RATE,
            "p99_ms_max": TARGET_P99_MS,
            "dropped_max": 0,
            "kept_up_min": KEEP_UP_FRACTION,
            **checks,
            "met": all(checks.values()),
        }

    def to_doc(self) -> dict[str, Any]:
        """The ``--json`` document."""
        doc = asdict(self)
        ratio = self.delivered_ratio
        doc.update(
            {
                "dropped": self.dropped,
                "msgs_per_s": round(self.msgs_per_s, 1),
                "expected_msgs_per_s": round(self.expected_msgs_per_s, 1),
                "nominal_msgs_per_s": round(self.nominal_msgs_per_s, 1),
                "delivered_ratio": round(ratio, 4) if ratio is not None else None,
                "kept_up": self.kept_up,
                "targets": self.targets(),
                "elapsed_s": round(self.elapsed_s, 1),
                "machine": machine_doc(),
            }
        )
        return doc


def connect_budget_s(clients: int) -> float:
    """Seconds the connect phase may take before the clients not yet tried are given up."""
    return CONNECT_BUDGET_S + CONNECT_BUDGET_PER_CLIENT_S * clients


def hist_percentile(hist: dict[int, int], q: float) -> int:
    """Nearest-rank percentile (``q`` in 0..1) of a ``{bucket: count}`` histogram: the bucket."""
    total = sum(hist.values())
    if total == 0:
        raise ValueError("no values")
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket
    return max(hist)


def _bucket_ms(bucket: int) -> float:
    """The middle of a latency bucket, in ms."""
    return round((bucket + 0.5) * BUCKET_NS / 1e6, 3)


def _pct_ms(values: list[float], q: float) -> float | None:
    """A percentile of (unsorted) milliseconds, to 0.01 ms."""
    return round(percentile(sorted(values), q), 2) if values else None


# --- the run -----------------------------------------------------------------------------


class _WsBench(PrivateStack[WsBenchResult]):
    """The servers, the daemons and the client workers of one run."""

    def __init__(self, opts: WsBenchOptions, home: Path, progress: ProgressFn) -> None:
        super().__init__(home, progress)
        self.opts = opts
        self.events: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        """Control connections of the workers, by the task reading each."""

    # servers and daemons ---------------------------------------------------------------

    def bench_settings(self, nats_url: str, redis_url: str) -> Settings:
        opts = self.opts
        return self.settings(
            nats_url,
            redis_url,
            symbols=opts.symbols,
            rate=opts.rate,
            **self.service_ports(),
            # Tokens outlive the run: an expiry mid-run would close every client.
            access_token_ttl_s=min(86_400, max(3600, int(opts.seconds * 2) + 1800)),
            publish_limit=None,
        )

    async def bench_user(self, settings: Settings) -> str:
        """Register the bench user; wait until the gateway has a quote of every symbol."""
        self.progress("registering the bench user")
        async with httpx.AsyncClient(base_url=settings.gateway_url, timeout=10) as http:
            token = await register_user(http, "bench@example.com", "the bench user")
            self.progress("waiting for the first quote of every symbol")
            deadline = time.monotonic() + 30
            want = set(self.opts.symbols)
            while True:
                resp = await http.get("/api/v1/prices", headers={"Authorization": f"Bearer {token}"})
                if resp.status_code == 200 and want <= {q["symbol"] for q in resp.json()}:
                    return token
                if time.monotonic() > deadline:
                    raise BenchError("no quote of every symbol within 30s", self.procs.log_tail("processor") or None)
                await asyncio.sleep(0.1)

    # workers ---------------------------------------------------------------------------

    async def start_workers(self) -> asyncio.Server:
        opts = self.opts
        workers = min(opts.workers, opts.clients)

        async def on_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.handlers[task] = writer
            wid = -1
            try:
                while line := await reader.readline():
                    doc = json.loads(line)
                    if doc.get("event") == "hello":
                        wid = int(doc["worker"])
                        self.writers[wid] = writer
                    await self.events.put((wid, doc))
                why = "its control connection closed"
            except (OSError, ValueError) as exc:
                why = f"bad control line: {exc.__class__.__name__}: {str(exc)[:100]}"
            except asyncio.CancelledError:
                return  # the run is being interrupted (a cancelled handler would be logged as an error)
            finally:
                del self.handlers[task]
            await self.events.put((wid, {"event": "gone", "why": why}))

        server = await asyncio.start_server(on_worker, self.host, 0, limit=CONTROL_LINE_LIMIT)
        port = server.sockets[0].getsockname()[1]
        env = clean_env()
        self.progress(f"starting {workers} client workers")
        for wid in range(workers):
            argv = launch.module_argv("stockctl.bench.ws_client", f"{self.host}:{port}", str(wid))
            self.spawn(f"worker{wid}", argv, env)
        await self.collect("hello", workers, 30.0)
        return server

    async def stop_workers(self) -> None:
        """Ask the workers to exit and wait until their control connections end (5 s at most)."""
        with contextlib.suppress(Exception):
            self.tell({"op": "exit"})
            for writer in self.writers.values():
                await asyncio.wait_for(writer.drain(), 2)
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=5)
        for writer in list(self.handlers.values()):
            writer.close()  # the reading task sees EOF and ends
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=1)

    def tell(self, doc: dict[str, Any]) -> None:
        for writer in self.writers.values():
            writer.write(json.dumps(doc).encode() + b"\n")

    async def collect(
        self,
        event: str,
        count: int,
        timeout: float,
        on_progress: Callable[[dict[int, dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """The ``event`` line of each of ``count`` workers; progress lines go to ``on_progress``."""
        got: dict[int, dict[str, Any]] = {}
        latest: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(got) < count:
            try:
                wid, doc = await asyncio.wait_for(self.events.get(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise BenchError(f"{count - len(got)} client workers sent no {event!r} within {timeout:g}s") from None
            if doc.get("event") == "gone":
                tail = self.procs.log_tail(f"worker{wid}")
                raise BenchError(f"client worker {wid} stopped: {doc['why']}", tail or None)
            if doc.get("event") == event:
                got[wid] = doc
            elif doc.get("event") == "progress" and on_progress is not None:
                latest[wid] = doc
                on_progress(latest)
        return [got[k] for k in sorted(got)]

    # the run -------------------------------------------------------------------------

    async def run(self) -> WsBenchResult:
        nats_url, redis_url = self.start_servers()
        settings = self.bench_settings(nats_url, redis_url)
        settings.ensure_dirs()
        await self.start_daemons(settings, DAEMONS, DAEMON_START_TIMEOUT, f"starting the daemons: {', '.join(DAEMONS)}")
        token = await self.bench_user(settings)

        # Quotes per symbol on NATS, counted by receipt time like the clients count theirs.
        window = [_NEVER, _NEVER]
        on_nats: Counter[str] = Counter()

        async def on_quote(msg: Msg) -> None:
            if window[0] <= time.time_ns() < window[1]:
                on_nats[msg.subject.rsplit(".", 1)[-1]] += 1

        nc = await connect_nats(nats_url, "bench-ws", pending_size=None)
        server = None
        try:
            await nc.subscribe(names.QUOTE_SUBJECTS, cb=on_quote)
            server = await self.start_workers()
            workers = len(self.writers)
            return await self.measure(settings, token, workers, window, on_nats)
        finally:
            await self.stop_workers()
            if server is not None:
                server.close()
            await close_nats(nc)

    async def measure(
        self, settings: Settings, token: str, workers: int, window: list[int], on_nats: Counter[str]
    ) -> WsBenchResult:
        opts = self.opts
        base = {
            "host": self.host,
            "port": settings.ws_port,
            "token": token,
            "symbols": opts.symbols,
            "channels_per_client": opts.channels_per_client,
            "clients": opts.clients,
            "step": workers,
            "concurrency": max(1, math.ceil(opts.concurrency / workers)),
            "budget_s": connect_budget_s(opts.clients),
        }

        def connecting(latest: dict[int, dict[str, Any]]) -> None:
            ok = sum(d.get("connected", 0) for d in latest.values())
            failed = sum(d.get("failed", 0) for d in latest.values())
            bad = f", {failed:,} failed" if failed else ""
            self.progress(f"connecting clients: {ok:,}/{opts.clients:,}{bad}, {time.monotonic() - t0:.0f}s")

        self.progress(f"connecting {opts.clients:,} clients")
        t0 = time.monotonic()
        for wid, writer in self.writers.items():
            writer.write(json.dumps({"op": "connect", "first": wid, **base}).encode() + b"\n")
        timeout = connect_budget_s(opts.clients) + CONNECT_TIMEOUT + 30
        conn_docs = await self.collect("connected", workers, timeout, connecting)
        connect_s = time.monotonic() - t0
        connected = sum(d["connected"] for d in conn_docs)
        failed = sum(d["failed"] for d in conn_docs)
        connect_ms = [ms for d in conn_docs for ms in d["connect_ms"]]
        subscribers: Counter[str] = Counter()
        fail_reasons: Counter[str] = Counter()
        for d in conn_docs:
            subscribers.update(d["subscribers"])
            fail_reasons.update(d["fail_reasons"])
        self.check_alive("gateway", "processor", "publisher")

        self.progress(f"{connected:,} clients connected; settling")
        await asyncio.sleep(SETTLE_S)
        start_ns = time.time_ns() + 300_000_000
        end_ns = start_ns + int(opts.seconds * 1e9)
        window[0], window[1] = start_ns, end_ns
        self.tell({"op": "measure", "start_ns": start_ns, "end_ns": end_ns})
        cpu = CpuMeter(self.meter_pids())
        await asyncio.sleep(max(0.0, (start_ns - time.time_ns()) / 1e9))
        cpu.start()
        kernel0, t_kernel0 = kernel_ticks(), time.monotonic()
        gw_status = settings.run_dir / "gateway.json"
        gw_before = launch.read_status(gw_status) or {}

        def measuring(latest: dict[int, dict[str, Any]]) -> None:
            quotes = sum(d.get("quotes", 0) for d in latest.values())
            closed = sum(d.get("closed", 0) for d in latest.values())
            elapsed = max(1e-3, (time.time_ns() - start_ns) / 1e9)
            drops = f", {closed:,} closed" if closed else ""
            self.progress(
                f"measuring {min(elapsed, opts.seconds):.0f}/{opts.seconds:g}s: {quotes / elapsed:,.0f} quotes/s{drops}"
            )

        results = await self.collect("result", workers, opts.seconds + 30, measuring)
        usage = cpu.stop()
        kernel1, t_kernel1 = kernel_ticks(), time.monotonic()
        gw_after = launch.read_status(gw_status) or {}
        self.check_alive("gateway", "processor", "publisher")

        hist: Counter[int] = Counter()
        close_reasons: Counter[str] = Counter()
        for d in results:
            hist.update({int(k): v for k, v in d["hist"].items()})
            close_reasons.update(d["close_reasons"])
        quotes = sum(d["quotes"] for d in results)
        lags = [lag for d in results for lag in d["lag_ms"]]
        max_ns = max((d["max_ns"] for d in results), default=0)
        expected = sum(on_nats[sym] * n for sym, n in subscribers.items())

        frames_rate = None
        t_before, t_after = gw_before.get("updated"), gw_after.get("updated")
        if t_before and t_after and t_after > t_before:
            frames = gw_after.get("counters", {}).get("frames", 0) - gw_before.get("counters", {}).get("frames", 0)
            frames_rate = round(frames / (t_after - t_before), 1)

        workers_cpu = [v for k, v in usage.items() if k.startswith("worker")]
        cpu_doc = {k: v for k, v in usage.items() if not k.startswith("worker")}
        if workers_cpu:
            cpu_doc["workers"] = round(sum(workers_cpu), 2)
        if kernel0 is not None and kernel1 is not None and "other" in cpu_doc:
            # Loopback TCP is mostly softirq work that /proc/<pid> charges to no process: say so.
            hz = os.sysconf("SC_CLK_TCK")
            irq = round(max(0, kernel1 - kernel0) / hz / max(1e-3, t_kernel1 - t_kernel0), 2)
            cpu_doc["irq"] = min(irq, cpu_doc["other"])
            cpu_doc["other"] = round(cpu_doc["other"] - cpu_doc["irq"], 2)

        return WsBenchResult(
            clients=opts.clients,
            connected=connected,
            failed=failed,
            closed=sum(d["closed"] for d in results),
            seconds=opts.seconds,
            rate=opts.rate,
            symbols=opts.symbols,
            channels_per_client=opts.channels_per_client,
            workers=workers,
            concurrency=opts.concurrency,
            connect_s=round(connect_s, 3),
            connect_p50_ms=_pct_ms(connect_ms, 0.50),
            connect_p99_ms=_pct_ms(connect_ms, 0.99),
            connect_max_ms=round(max(connect_ms), 2) if connect_ms else None,
            quotes=quotes,
            expected=expected,
            p50_ms=_bucket_ms(hist_percentile(hist, 0.50)) if hist else None,
            p99_ms=_bucket_ms(hist_percentile(hist, 0.99)) if hist else None,
            max_ms=round(max_ns / 1e6, 3) if hist else None,
            client_lag_p99_ms=_pct_ms(lags, 0.99),
            client_lag_max_ms=round(max(lags), 2) if lags else None,
            gateway_frames_per_s=frames_rate,
            gateway_clients=gw_after.get("info", {}).get("clients"),
            close_reasons=dict(close_reasons.most_common(10)),
            fail_reasons=dict(fail_reasons.most_common(10)),
            cpu=cpu_doc,
        )


def run_ws_bench(opts: WsBenchOptions | None = None, progress: ProgressFn | None = None) -> WsBenchResult:
    """Run the whole benchmark on private servers; every process it starts is stopped."""
    opts = opts or WsBenchOptions()
    opts.check()
    report = progress or no_progress
    return run_private(
        "stockctl-bench-ws-",
        lambda home: _WsBench(opts, home, report),
        report,
        "stopping the benchmark's clients, daemons and servers",
    )


__all__ = [
    "DEFAULT_CLIENTS",
    "TARGET_CLIENTS",
    "TARGET_P99_MS",
    "WsBenchOptions",
    "WsBenchResult",
    "client_frame",
    "hist_percentile",
    "parse_symbols",
    "run_ws_bench",
]
