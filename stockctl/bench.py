"""``stockctl bench ticks``: the tick pipeline measured on this machine, beside raw NATS.

Everything runs on private servers in a temporary directory, so a benchmark never
touches (or is disturbed by) a running instance:

* a nats-server (JetStream) and a valkey-server on free ports, started the way the
  supervisor starts them (:mod:`stockctl.infra`);
* the real processor daemon (``python -m daemons processor``), configured through
  :meth:`Settings.to_env` like the supervisor configures it;
* in this process, a paced tick driver publishing the publisher's messages (same
  subjects, payloads and ``Nats-Msg-Id`` headers, JetStream ``publish_async``) and a
  core-NATS quote subscriber measuring tick timestamp -> quote received.

Offered rates are stepped up; between steps the backlog is drained, so every step
starts from an empty pipeline. Once a step falls behind, the rest of the ladder is
skipped and one or two probe steps just below the saturated throughput find the rate
the pipeline does sustain. The raw nats-py publish -> subscribe rate on the same
server, measured in the same run, is the baseline the pipeline is compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from stockctl import infra, names
from stockctl.errors import StartupError, StockctlError, UsageError
from stockctl.gbm import make_walks
from stockctl.money import from_units
from stockctl.service import ensure_tick_stream
from stockctl.settings import ENV_PREFIX, Settings
from stockctl.wire import Tick, encode, quote_decoder

DEFAULT_RATES: tuple[int, ...] = (1_000, 5_000, 20_000, 50_000)
DEFAULT_SECONDS = 5.0
QUICK_RATES: tuple[int, ...] = (500, 2_000)
QUICK_SECONDS = 2.0
DEFAULT_SYMBOLS = 5
DEFAULT_BASELINE_MESSAGES = 200_000
LATENCY_RATE = 1_000
"""The step whose latency is the headline figure (the lowest step if it is not run)."""

TARGET_RATIO = 0.5
"""Sustained pipeline rate over the raw nats-py baseline, at least."""
TARGET_P99_MS = 5.0
"""p99 tick -> quote latency at 1,000 ticks/s, below."""

KEEP_UP_FRACTION = 0.95
"""A step keeps up when it delivers at least this share of its offered rate (and drains)."""

MSG_ID = "Nats-Msg-Id"
PRICE_CYCLE = 4096
"""Precomputed GBM prices per symbol, cycled: the driver spends no time on the walk."""

SERVER_START_TIMEOUT = 20.0
PROCESSOR_START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


class BenchError(StockctlError):
    """The benchmark could not run to the end."""


ProgressFn = Callable[[str], None]


def _no_progress(_: str) -> None:
    pass


# --- results -----------------------------------------------------------------------------


@dataclass
class StepResult:
    """One offered rate, held for ``seconds``, then drained."""

    offered_per_s: float
    seconds: float
    published: int
    published_per_s: float
    delivered: int
    """Quotes received while ticks were being published (the step's window)."""
    delivered_per_s: float
    quotes: int
    """Quotes of this step's ticks received in all, the drain included."""
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    drained: bool
    drain_s: float
    kept_up: bool
    probe: bool = False
    avg_batch: float | None = None
    """Ticks per processor batch (one Redis transaction) during the step."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used during the step, per process (Linux only)."""

    @property
    def driver_limited(self) -> bool:
        """The driver itself could not offer the rate (so the step says little about the pipeline)."""
        return self.published_per_s < KEEP_UP_FRACTION * self.offered_per_s


@dataclass
class BaselineResult:
    """Raw nats-py core publish -> subscribe on the same server."""

    messages: int
    """Messages published per round."""
    payload_bytes: int
    seconds: float
    """Duration of the best round."""
    msgs_per_s: float
    """Rate of the best round: the baseline."""
    lost: int = 0
    """Messages of the best round that never arrived (a slow consumer on core NATS)."""
    rounds: list[float] = field(default_factory=list)
    """Rate of every round, msgs/s."""


@dataclass
class BenchResult:
    steps: list[StepResult]
    baseline: BaselineResult
    symbols: list[str]
    seconds: float
    skipped_rates: list[int] = field(default_factory=list)
    """Rates not run because a lower one already fell behind."""
    elapsed_s: float = 0.0

    @property
    def sustained(self) -> float:
        """Highest delivered rate among the steps that kept up (0 if none did)."""
        return max((s.delivered_per_s for s in self.steps if s.kept_up), default=0.0)

    @property
    def max_delivered(self) -> float:
        return max((s.delivered_per_s for s in self.steps), default=0.0)

    @property
    def latency_step(self) -> StepResult | None:
        """The 1,000 ticks/s step, else the lowest-rate step with latencies."""
        with_lat = [s for s in self.steps if s.p99_ms is not None and not s.probe]
        for s in with_lat:
            if s.offered_per_s == LATENCY_RATE:
                return s
        return min(with_lat, key=lambda s: s.offered_per_s, default=None)

    @property
    def ratio(self) -> float:
        return self.sustained / self.baseline.msgs_per_s if self.baseline.msgs_per_s else 0.0

    def targets(self) -> dict[str, Any]:
        lat = self.latency_step
        p99 = lat.p99_ms if lat else None
        return {
            "ratio_min": TARGET_RATIO,
            "ratio_met": self.ratio >= TARGET_RATIO,
            "p99_ms_max": TARGET_P99_MS,
            "p99_at_ticks_per_s": lat.offered_per_s if lat else None,
            "p99_met": p99 is not None and p99 < TARGET_P99_MS,
        }

    def to_doc(self) -> dict[str, Any]:
        """The ``--json`` document."""
        lat = self.latency_step
        steps = []
        for s in self.steps:
            doc = asdict(s)
            doc["driver_limited"] = s.driver_limited
            steps.append(doc)
        return {
            "ticks_per_s": round(self.sustained, 1),
            "p50_ms": lat.p50_ms if lat else None,
            "p99_ms": lat.p99_ms if lat else None,
            "latency_at_ticks_per_s": lat.offered_per_s if lat else None,
            "max_delivered_ticks_per_s": round(self.max_delivered, 1),
            "baseline_msgs_per_s": round(self.baseline.msgs_per_s, 1),
            "ratio": round(self.ratio, 4),
            "targets": self.targets(),
            "steps": steps,
            "skipped_rates": self.skipped_rates,
            "baseline": asdict(self.baseline),
            "symbols": self.symbols,
            "seconds_per_step": self.seconds,
            "elapsed_s": round(self.elapsed_s, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        }


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted values (``q`` in 0..1)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, int(-(-q * len(sorted_values) // 1)))  # ceil(q * n), at least 1
    return sorted_values[min(rank, len(sorted_values)) - 1]


def bench_symbols(count: int) -> list[str]:
    """The default symbols first, then made-up ones (``BENCH05``...)."""
    if count < 1:
        raise UsageError("--symbols must be at least 1")
    base = ["AAPL", "GOOGL", "AMZN", "MSFT", "TSLA"]
    return (base + [f"BENCH{i:02d}" for i in range(len(base), count)])[:count]


def parse_rates(text: str) -> list[int]:
    """``"1000,5k,20000"`` -> ``[1000, 5000, 20000]`` (sorted, de-duplicated)."""
    rates: set[int] = set()
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1
        if part.endswith("k"):
            part, mult = part[:-1], 1000
        try:
            value = float(part) * mult
        except ValueError:
            raise UsageError(
                f"bad rate {part!r} in --rates", "give ticks per second, e.g. --rates 1000,5000,20k"
            ) from None
        if not 1 <= value <= 1_000_000:
            raise UsageError(f"rate {value:g} out of range", "rates are 1 to 1,000,000 ticks per second")
        rates.add(int(value))
    if not rates:
        raise UsageError("--rates is empty", "e.g. --rates 1000,5000,20000")
    return sorted(rates)


# --- processes ---------------------------------------------------------------------------

_libc: Any = None


def _load_libc() -> None:
    """Load libc in the parent, so the child's pre-exec hook only makes one call."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the benchmark dies, even by SIGKILL (Linux)."""
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Child processes of one benchmark, stopped in reverse start order, always."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        _load_libc()

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        logf = (self.log_dir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,  # a Ctrl-C reaches the benchmark, which stops them in order
                preexec_fn=_die_with_parent if _libc is not None else None,
            )
        except OSError as exc:
            logf.close()
            raise BenchError(f"cannot start {name}: {exc}") from None
        self.procs.append((name, proc, logf))
        return proc

    def log_tail(self, name: str, lines: int = 5) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def check_alive(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            tail = self.log_tail(name)
            raise StartupError(f"{name} exited with {proc.returncode} during the benchmark", tail or None)

    @staticmethod
    def _stop_one(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        while self.procs:
            _, proc, logf = self.procs.pop()
            try:
                self._stop_one(proc)
            finally:
                logf.close()


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process, in clock ticks (Linux ``/proc``), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def _machine_busy_ticks() -> int | None:
    """Busy time of all CPUs together (``/proc/stat``), in clock ticks, else None."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = fh.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        return user + nice + system + irq + softirq + steal
    except (OSError, IndexError, ValueError):
        return None


class CpuMeter:
    """Cores used by each process between :meth:`start` and :meth:`stop`.

    ``other`` is what the rest of the machine used meanwhile: a busy neighbour
    explains a slow step.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._t0 = 0.0
        self._c0: dict[str, int | None] = {}
        self._busy0: int | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = {name: _cpu_ticks(pid) for name, pid in self.pids.items()}
        self._busy0 = _machine_busy_ticks()

    def stop(self) -> dict[str, float]:
        dt = time.monotonic() - self._t0
        out: dict[str, float] = {}
        if dt <= 0:
            return out
        for name, pid in self.pids.items():
            before, after = self._c0.get(name), _cpu_ticks(pid)
            if before is not None and after is not None:
                out[name] = round((after - before) / self.hz / dt, 2)
        busy = _machine_busy_ticks()
        if busy is not None and self._busy0 is not None and len(out) == len(self.pids):
            out["other"] = round(max(0.0, (busy - self._busy0) / self.hz / dt - sum(out.values())), 2)
        return out


# --- the driver --------------------------------------------------------------------------


class Driver:
    """Publishes paced ticks (as the publisher does) and times the quotes that come back."""

    def __init__(self, pub: NATS, sub: NATS, symbols: list[str], stream_settings: Settings) -> None:
        self.pub, self.sub = pub, sub
        self.js = pub.jetstream(publish_async_max_pending=50_000)
        self.settings = stream_settings
        self.symbols = symbols
        self.subjects = [names.tick_subject(s) for s in symbols]
        walks = make_walks(symbols, 1000.0, 60.0, seed=1)
        self.prices = {s: [from_units(walks[s].step()) for _ in range(PRICE_CYCLE)] for s in symbols}
        self.volumes = {s: [walks[s].volume() for _ in range(PRICE_CYCLE)] for s in symbols}
        self.seqs = dict.fromkeys(symbols, 0)
        self.next_symbol = 0
        self.published = 0
        self.received = 0
        self.latencies: list[int] = []
        self.publish_errors = 0
        self._acks: list[asyncio.Future] = []

    async def setup(self) -> None:
        await ensure_tick_stream(self.js, self.settings)

        async def on_quote(msg: Msg) -> None:
            now = time.time_ns()
            self.received += 1
            self.latencies.append(now - quote_decoder.decode(msg.data).ts)

        await self.sub.subscribe(
            names.QUOTE_SUBJECTS, cb=on_quote, pending_msgs_limit=2_000_000, pending_bytes_limit=1024 * 1024 * 1024
        )
        await self.sub.flush()

    async def _publish_one(self) -> None:
        i = self.next_symbol
        self.next_symbol = (i + 1) % len(self.symbols)
        sym = self.symbols[i]
        seq = self.seqs[sym] + 1
        self.seqs[sym] = seq
        k = seq % PRICE_CYCLE
        tick = Tick(sym, self.prices[sym][k], time.time_ns(), seq, self.volumes[sym][k])
        fut = await self.js.publish_async(self.subjects[i], encode(tick), headers={MSG_ID: f"{sym}:{seq}"})
        self._acks.append(fut)
        self.published += 1

    def _reap_acks(self) -> None:
        """Count failed publishes among the acks that have arrived (keeps the list short)."""
        keep = []
        for fut in self._acks:
            if fut.done():
                if fut.cancelled() or fut.exception() is not None:
                    self.publish_errors += 1
            else:
                keep.append(fut)
        self._acks = keep

    async def offer(self, rate: float, seconds: float, progress: ProgressFn, label: str) -> tuple[int, float]:
        """Publish at ``rate`` ticks/s (all symbols together) for ``seconds``; (published, elapsed)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        end = t0 + seconds
        total = int(rate * seconds)
        burst = max(1, int(rate / 500))  # at most 2 ms worth at once, then yield and look at the clock
        sent = 0
        next_report = t0
        while True:
            now = loop.time()
            if now >= end or sent >= total:
                break
            due = min(total, int((now - t0) * rate) + 1, sent + burst) - sent
            for _ in range(due):
                await self._publish_one()
            sent += due
            if now >= next_report:
                self._reap_acks()
                progress(f"{label}: {now - t0:.1f}/{seconds:g}s, backlog {self.published - self.received:,}")
                next_report = now + 0.25
            delay = t0 + sent / rate - loop.time()
            await asyncio.sleep(delay if delay > 0 else 0)
        return sent, loop.time() - t0

    async def drain(self, timeout: float, progress: ProgressFn, label: str) -> tuple[bool, float]:
        """Wait until every published tick is stored and has come back as a quote."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = t0 + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.js.publish_async_completed(), timeout)
        self._reap_acks()
        next_report = t0
        while self.received < self.published - self.publish_errors:
            now = loop.time()
            if now >= deadline:
                return False, now - t0
            if now >= next_report:
                progress(f"{label}: draining, backlog {self.published - self.received:,}")
                next_report = now + 0.25
            await asyncio.sleep(0.005)
        return True, loop.time() - t0


async def _baseline_round(pub: NATS, sub: NATS, subject: str, messages: int, payload: bytes) -> tuple[int, float]:
    """One round: (messages received, seconds from first publish to last receive)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0
    last = 0.0

    async def on_msg(_: Msg) -> None:
        nonlocal count, last
        count += 1
        last = time.perf_counter()
        if count >= messages and not done.done():
            done.set_result(None)

    s = await sub.subscribe(subject, cb=on_msg, pending_msgs_limit=messages + 1, pending_bytes_limit=1 << 30)
    await sub.flush()
    t0 = time.perf_counter()
    last_flush = t0
    publish = pub.publish
    for i in range(messages):
        await publish(subject, payload)
        if i % 1000 == 0 and time.perf_counter() - last_flush >= 1.0:
            await pub.flush()  # a PING/PONG round trip once a second, as a steady publisher would
            last_flush = time.perf_counter()
    await pub.flush()
    # Core NATS may drop messages for a slow consumer: stop once nothing arrives for 2 s.
    seen = -1
    while not done.done() and count != seen:
        seen = count
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), 2.0)
    with contextlib.suppress(Exception):
        await s.unsubscribe()
    return count, last - t0


async def measure_baseline(
    url: str, messages: int, payload_bytes: int, rounds: int = 1, progress: ProgressFn = _no_progress
) -> BaselineResult:
    """Raw nats-py: one connection publishes ``messages`` on core NATS, another receives them.

    Both connections use nats-py's defaults and share this process's event loop, like
    the pipeline's driver. The publisher writes as fast as nats-py lets it and flushes
    once a second; a round's rate is messages received over first publish -> last
    receive. The best of ``rounds`` is the baseline (the other rounds are kept).
    """
    pub = await _connect(url, "bench-baseline-pub", pending_size=None)
    sub = await _connect(url, "bench-baseline-sub", pending_size=None)
    payload = b"x" * payload_bytes
    rates: list[float] = []
    best: tuple[float, int, float] | None = None
    try:
        for r in range(1, rounds + 1):
            progress(f"baseline: raw nats-py publish -> subscribe, {messages:,} messages, round {r}/{rounds}")
            count, elapsed = await _baseline_round(pub, sub, f"bench.baseline.{r}", messages, payload)
            if count == 0 or elapsed <= 0:
                raise BenchError(f"baseline: none of {messages:,} core NATS messages arrived")
            rate = count / elapsed
            rates.append(round(rate, 1))
            if best is None or rate > best[0]:
                best = (rate, count, elapsed)
    finally:
        await _close(pub)
        await _close(sub)
    assert best is not None
    rate, count, elapsed = best
    return BaselineResult(messages, payload_bytes, round(elapsed, 4), round(rate, 1), messages - count, rates)


async def _connect(url: str, name: str, pending_size: int | None = 64 * 1024 * 1024) -> NATS:
    """A connection that never reconnects (the servers are ours) and logs nothing."""

    async def quiet(_: Exception) -> None:
        pass

    extra = {} if pending_size is None else {"pending_size": pending_size}
    try:
        return await nats.connect(url, name=name, allow_reconnect=False, connect_timeout=5, error_cb=quiet, **extra)
    except Exception as exc:
        raise BenchError(f"cannot connect to the benchmark's nats-server at {url}: {exc}") from None


async def _close(nc: NATS) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), 5)


def _read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- the run -----------------------------------------------------------------------------


@dataclass
class BenchOptions:
    rates: list[int] = field(default_factory=lambda: list(DEFAULT_RATES))
    seconds: float = DEFAULT_SECONDS
    symbols: int = DEFAULT_SYMBOLS
    baseline_messages: int = DEFAULT_BASELINE_MESSAGES
    baseline_rounds: int = 3
    probe: bool = True
    """After the first step that falls behind, try rates just below what it delivered."""
    drain_timeout: float | None = None
    """Seconds to wait for a step's backlog (default: 2 x the step, at least 10 s)."""

    @classmethod
    def quick(cls) -> BenchOptions:
        return cls(
            rates=list(QUICK_RATES), seconds=QUICK_SECONDS, baseline_messages=50_000, baseline_rounds=1, probe=False
        )


class _Bench:
    def __init__(self, opts: BenchOptions, home: Path, progress: ProgressFn) -> None:
        self.opts = opts
        self.home = home
        self.progress = progress
        self.symbols = bench_symbols(opts.symbols)
        self.host = "127.0.0.1"
        self.procs = Processes(home)

    # servers and processor -------------------------------------------------------------

    def start_servers(self) -> tuple[str, str, dict[str, int]]:
        host = self.host
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(infra.free_port(host))
        nats_port, monitor_port, redis_port = sorted(ports)
        store = self.home / "nats"
        data = self.home / "redis"
        store.mkdir()
        data.mkdir()
        self.progress("starting nats-server and valkey-server")
        nats_proc = self.procs.start("nats", infra.nats_argv(host, nats_port, monitor_port, store), cwd=self.home)
        redis_proc = self.procs.start("redis", infra.redis_argv(host, redis_port, data), cwd=self.home)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        waiting = {"nats": True, "redis": True}
        while any(waiting.values()):
            for name, proc in (("nats", nats_proc), ("redis", redis_proc)):
                if proc.poll() is not None:
                    raise StartupError(
                        f"{name} server exited with {proc.returncode} at start", self.procs.log_tail(name) or None
                    )
            if waiting["nats"]:
                waiting["nats"] = not infra.nats_ready(host, monitor_port)
            if waiting["redis"]:
                waiting["redis"] = not infra.redis_ready(host, redis_port)
            if time.monotonic() > deadline:
                late = ", ".join(k for k, v in waiting.items() if v)
                raise StartupError(f"{late} not ready within {SERVER_START_TIMEOUT:g}s", "see its log for the cause")
            if any(waiting.values()):
                time.sleep(0.05)
        pids = {"nats": nats_proc.pid, "valkey": redis_proc.pid}
        return f"nats://{host}:{nats_port}", f"redis://{host}:{redis_port}/0", pids

    def processor_settings(self, nats_url: str, redis_url: str) -> Settings:
        try:
            return Settings(
                home=self.home,
                host=self.host,
                nats_url=nats_url,
                redis_url=redis_url,
                symbols=self.symbols,
                log_level="WARNING",
                replay_csv=None,
                only=[],
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"])
            raise UsageError(f"bad {name}: {err['msg']}", f"check STOCKCTL_{name.upper()}") from None

    async def start_processor(self, settings: Settings) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(settings.to_env())
        env["PYTHONUNBUFFERED"] = "1"
        self.progress("starting the processor daemon")
        proc = self.procs.start("processor", [sys.executable, "-m", "daemons", "processor"], env=env, cwd=self.home)
        status = settings.run_dir / "processor.json"
        deadline = time.monotonic() + PROCESSOR_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise StartupError(
                    f"the processor exited with {proc.returncode} at start", self.procs.log_tail("processor") or None
                )
            doc = _read_status(status)
            if doc and doc.get("ready") and doc.get("pid") == proc.pid:
                return proc
            if time.monotonic() > deadline:
                raise StartupError(
                    f"the processor was not ready within {PROCESSOR_START_TIMEOUT:g}s",
                    self.procs.log_tail("processor") or None,
                )
            await asyncio.sleep(0.05)

    # steps ----------------------------------------------------------------------------

    async def step(
        self,
        driver: Driver,
        proc: subprocess.Popen[bytes],
        cpu: CpuMeter,
        rate: float,
        label: str,
        probe: bool = False,
    ) -> StepResult:
        opts = self.opts
        status_path = self.home / "run" / "processor.json"
        before = (_read_status(status_path) or {}).get("counters", {})
        driver.latencies = []
        received0 = driver.received
        cpu.start()
        try:
            published, elapsed = await asyncio.wait_for(
                driver.offer(rate, opts.seconds, self.progress, label), opts.seconds + 30
            )
        except TimeoutError:
            raise BenchError(f"{label}: publishing stalled (JetStream stopped acknowledging ticks)") from None
        delivered = driver.received - received0
        drain_timeout = opts.drain_timeout if opts.drain_timeout is not None else max(10.0, 2 * opts.seconds)
        drained, drain_s = await driver.drain(drain_timeout, self.progress, label)
        usage = cpu.stop()
        self.procs.check_alive("processor", proc)
        lat = sorted(driver.latencies)
        driver.latencies = []
        await asyncio.sleep(1.1)  # let the processor rewrite its status file
        after = (_read_status(status_path) or {}).get("counters", {})
        batches = after.get("batches", 0) - before.get("batches", 0)
        ticks = after.get("ticks", 0) - before.get("ticks", 0)
        delivered_per_s = delivered / elapsed if elapsed > 0 else 0.0
        ms = 1e6
        return StepResult(
            offered_per_s=float(rate),
            seconds=round(elapsed, 3),
            published=published,
            published_per_s=round(published / elapsed, 1) if elapsed > 0 else 0.0,
            delivered=delivered,
            delivered_per_s=round(delivered_per_s, 1),
            quotes=len(lat),
            p50_ms=round(percentile(lat, 0.50) / ms, 3) if lat else None,
            p99_ms=round(percentile(lat, 0.99) / ms, 3) if lat else None,
            max_ms=round(lat[-1] / ms, 3) if lat else None,
            drained=drained,
            drain_s=round(drain_s, 3),
            kept_up=drained and delivered_per_s >= KEEP_UP_FRACTION * rate,
            probe=probe,
            avg_batch=round(ticks / batches, 1) if batches > 0 and ticks > 0 else None,
            cpu=usage,
        )

    async def warm_up(self, driver: Driver) -> None:
        """A few hundred ticks first: the processor loads each symbol once, caches fill."""
        self.progress("warming up")
        await driver.offer(500.0, 1.0, _no_progress, "warm-up")
        drained, _ = await driver.drain(15.0, _no_progress, "warm-up")
        if not drained:
            raise BenchError(
                f"the processor returned {driver.received} of {driver.published} warm-up ticks within 15s",
                self.procs.log_tail("processor") or None,
            )

    async def run(self) -> BenchResult:
        opts = self.opts
        nats_url, redis_url, pids = self.start_servers()
        payload_bytes = len(encode(Tick(self.symbols[0], "228.50", time.time_ns(), 1, 10)))
        baseline = await measure_baseline(
            nats_url, opts.baseline_messages, payload_bytes, opts.baseline_rounds, self.progress
        )

        settings = self.processor_settings(nats_url, redis_url)
        pub = await _connect(nats_url, "bench-ticks")
        sub = await _connect(nats_url, "bench-quotes")
        try:
            driver = Driver(pub, sub, self.symbols, settings)
            try:
                await driver.setup()
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                raise BenchError(f"cannot create the tick stream: {exc}") from None
            proc = await self.start_processor(settings)
            pids = {"processor": proc.pid, **pids, "bench": os.getpid()}
            cpu = CpuMeter(pids)
            await self.warm_up(driver)

            steps: list[StepResult] = []
            skipped: list[int] = []
            n = len(opts.rates)
            for i, rate in enumerate(opts.rates, 1):
                result = await self.step(driver, proc, cpu, rate, f"step {i}/{n}: {rate:,} ticks/s")
                steps.append(result)
                if not result.kept_up:
                    # Higher rates can only fall further behind; a backlog left behind would spoil them anyway.
                    skipped = list(opts.rates[i:])
                    if result.drained:
                        await self.probe(driver, proc, cpu, steps)
                    break
            return BenchResult(steps, baseline, self.symbols, opts.seconds, skipped)
        finally:
            await _close(pub)
            await _close(sub)

    async def probe(self, driver: Driver, proc: subprocess.Popen[bytes], cpu: CpuMeter, steps: list[StepResult]):
        """Try rates just below the saturated throughput, so 'sustained' is not just a ladder rung."""
        if not self.opts.probe:
            return
        floor = max((s.offered_per_s for s in steps if s.kept_up), default=0.0)
        saturated = steps[-1].delivered_per_s
        for factor in (0.9, 0.75):
            rate = round(saturated * factor, -2)
            if rate <= floor * 1.05 or rate < 100:
                return
            result = await self.step(driver, proc, cpu, rate, f"probe: {rate:,.0f} ticks/s", probe=True)
            steps.append(result)
            if result.kept_up or not result.drained:
                return


def run_ticks_bench(opts: BenchOptions | None = None, progress: ProgressFn | None = None) -> BenchResult:
    """Run the whole benchmark on private servers; every process it starts is stopped."""
    opts = opts or BenchOptions()
    if opts.seconds <= 0:
        raise UsageError("--seconds must be above 0")
    if opts.baseline_messages < 1:
        raise UsageError("--baseline-messages must be at least 1")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stockctl-bench-") as tmp:
        bench = _Bench(opts, Path(tmp), progress or _no_progress)
        try:
            result = asyncio.run(bench.run())
        except (OSError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise BenchError(f"benchmark failed: {exc.__class__.__name__}: {exc}") from None
        finally:
            (progress or _no_progress)("stopping the benchmark's servers")
            bench.procs.stop_all()
    result.elapsed_s = time.monotonic() - t0
    return result


__all__ = [
    "DEFAULT_RATES",
    "QUICK_RATES",
    "BaselineResult",
    "BenchError",
    "BenchOptions",
    "BenchResult",
    "StepResult",
    "measure_baseline",
    "parse_rates",
    "percentile",
    "run_ticks_bench",
]
