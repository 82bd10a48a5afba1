"""``stockctl bench ticks``: the tick pipeline measured on this machine, beside raw NATS.

Everything runs on private servers in a temporary directory, so a benchmark never
touches (or is disturbed by) a running instance:

* a nats-server (JetStream) and a valkey-server on free ports, started the way the
  supervisor starts them (:mod:`stockctl.instance.infra`);
* the real processor daemon (``python -m daemons processor``), configured through
  :meth:`Settings.to_env` like the supervisor configures it;
* in this process, a paced tick driver publishing the publisher's messages (same
  subjects, payloads and ``Nats-Msg-Id`` headers, JetStream ``publish_async``) and a
  core-NATS quote subscriber measuring tick timestamp -> quote received.

With ``--backlog N``, N ticks are stored first, before the processor starts, and its
catch-up (first quote to last) measures what the processor does when it never waits for
the driver: the driver's own pace and the shared machine's limits stay out of that figure.

Offered rates are stepped up; between steps the backlog is drained, so every step
starts from an empty pipeline. Once a step falls behind, the rest of the ladder is
skipped and one or two probe steps just below the saturated throughput find the rate
the pipeline does sustain. The raw nats-py publish -> subscribe rate on the same
server, measured in the same run, is the baseline the pipeline is compared with.

:class:`TickBench` holds the steps on the processors named in its ``processors`` (their
status files give each step's batches, and the ticks each applied); ``bench ticks --cluster``
(:mod:`stockctl.bench.ticks_cluster`) runs them on a cluster with one processor, then two.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from stockctl.bench.cpu import CpuMeter, SchedWaitMeter
from stockctl.bench.kit import (
    BenchError,
    LadderResult,
    LatencyTarget,
    PrivateStack,
    ProgressFn,
    Timed,
    close_nats,
    connect_nats,
    machine_doc,
    no_progress,
    ns_to_ms,
    paced,
    parse_rates,
    pct_ms,
    percentile,
    run_private,
    step_ladder,
    steps_doc,
    wait_until,
)
from stockctl.errors import UsageError
from stockctl.instance.launch import read_status
from stockctl.marketdata.gbm import make_walks
from stockctl.marketdata.money import from_units
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.marketdata import Tick, encode, quote_decoder
from stockctl.wire.streams import ensure_tick_stream

DEFAULT_RATES: tuple[int, ...] = (1_000, 5_000, 10_000, 20_000, 50_000)
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
LATENCY_TARGETS: tuple[LatencyTarget, ...] = (LatencyTarget(LATENCY_RATE, TARGET_P99_MS), LatencyTarget(10_000, 50.0))

KEEP_UP_FRACTION = 0.95
"""A step keeps up when it delivers at least this share of its offered rate (and drains)."""

MSG_ID = "Nats-Msg-Id"
PRICE_CYCLE = 4096
"""Precomputed GBM prices per symbol, cycled: the driver spends no time on the walk."""

PROCESSOR_START_TIMEOUT = 30.0

T = TypeVar("T", bound=Timed)


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
    processor_ticks: dict[str, int] = field(default_factory=dict)
    """Ticks each processor applied during the step (their own counters): how the work split."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used during the step, per process (Linux only)."""
    run_queue_wait: dict[str, float] = field(default_factory=dict)
    """Seconds per second each process was runnable but waiting for a CPU (Linux only): a
    processor whose CPU plus this is near 1 is saturated, however low its CPU alone looks."""

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
class CatchUpResult:
    """``--backlog``: ticks stored before the processor started, then processed as fast as it can."""

    ticks: int
    seconds: float
    """First quote to last."""
    ticks_per_s: float
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used from the first quote to the last, per process."""
    run_queue_wait: dict[str, float] = field(default_factory=dict)
    avg_batch: float | None = None

    @property
    def cpu_us_per_tick(self) -> float | None:
        cores = self.cpu.get("processor")
        return round(cores * 1e6 / self.ticks_per_s, 1) if cores and self.ticks_per_s > 0 else None


@dataclass
class BenchResult(LadderResult):
    """What ``bench ticks`` measured: the steps, the raw NATS baseline, and the figures drawn from them."""

    steps: list[StepResult]
    baseline: BaselineResult
    symbols: list[str]
    seconds: float
    skipped_rates: list[int] = field(default_factory=list)
    """Rates not run because a lower one already fell behind."""
    elapsed_s: float = 0.0
    catch_up: CatchUpResult | None = None

    @staticmethod
    def delivered(step: StepResult) -> float:
        return step.delivered_per_s

    @property
    def latency_step(self) -> StepResult | None:
        """The 1,000 ticks/s step, else the lowest-rate step with latencies."""
        with_lat = [s for s in self.steps if s.p99_ms is not None and not s.probe]
        for s in with_lat:
            if s.offered_per_s == LATENCY_RATE:
                return s
        return min(with_lat, key=lambda s: s.offered_per_s, default=None)

    def targets(self) -> dict[str, Any]:
        lat = self.latency_step
        p99 = lat.p99_ms if lat else None
        return {
            "ratio_min": TARGET_RATIO,
            "ratio_met": self.ratio >= TARGET_RATIO,
            "p99_ms_max": TARGET_P99_MS,
            "p99_at_ticks_per_s": lat.offered_per_s if lat else None,
            "p99_met": p99 is not None and p99 < TARGET_P99_MS,
            "latency": [target.check(self.steps) for target in LATENCY_TARGETS],
        }

    def to_doc(self) -> dict[str, Any]:
        """The ``--json`` document."""
        lat = self.latency_step
        return {
            "ticks_per_s": round(self.sustained, 1),
            "p50_ms": lat.p50_ms if lat else None,
            "p99_ms": lat.p99_ms if lat else None,
            "latency_at_ticks_per_s": lat.offered_per_s if lat else None,
            "max_delivered_ticks_per_s": round(self.max_delivered, 1),
            "baseline_msgs_per_s": round(self.baseline.msgs_per_s, 1),
            "ratio": round(self.ratio, 4),
            "targets": self.targets(),
            "steps": steps_doc(self.steps),
            "skipped_rates": self.skipped_rates,
            "baseline": asdict(self.baseline),
            "symbols": self.symbols,
            "seconds_per_step": self.seconds,
            "elapsed_s": round(self.elapsed_s, 1),
            "catch_up": (asdict(self.catch_up) | {"cpu_us_per_tick": self.catch_up.cpu_us_per_tick})
            if self.catch_up
            else None,
            "machine": machine_doc(),
        }


def bench_symbols(count: int) -> list[str]:
    """The default symbols first, then made-up ones (``BENCH05``...)."""
    if count < 1:
        raise UsageError("--symbols must be at least 1")
    base = ["AAPL", "GOOGL", "AMZN", "MSFT", "TSLA"]
    return (base + [f"BENCH{i:02d}" for i in range(len(base), count)])[:count]


# --- the driver --------------------------------------------------------------------------


class Driver:
    """Publishes paced ticks (as the publisher does) and times the quotes that come back."""

    def __init__(self, pub: NATS, sub: NATS, symbols: list[str], stream_settings: Settings) -> None:
        self.pub, self.sub = pub, sub
        self.js = pub.jetstream(publish_async_max_pending=50_000)
        self.settings = stream_settings
        self.symbols = symbols
        self.subjects = [names.tick_subject(s, stream_settings.partitions) for s in symbols]
        walks = make_walks(symbols, 1000.0, 60.0, seed=1)
        self.prices = {s: [from_units(walks[s].step()) for _ in range(PRICE_CYCLE)] for s in symbols}
        self.volumes = {s: [walks[s].volume() for _ in range(PRICE_CYCLE)] for s in symbols}
        self.seqs = dict.fromkeys(symbols, 0)
        self.next_symbol = 0
        self.published = 0
        self.received = 0
        self.first_quote_at: float | None = None
        self.last_quote_at = 0.0
        """``time.perf_counter()`` of the first and the latest quote received."""
        self.latencies: list[int] = []
        self.publish_errors = 0
        self._acks: list[asyncio.Future] = []

    async def setup(self) -> None:
        await ensure_tick_stream(self.js, self.settings)

        async def on_quote(msg: Msg) -> None:
            now = time.time_ns()
            self.last_quote_at = time.perf_counter()
            if self.first_quote_at is None:
                self.first_quote_at = self.last_quote_at
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

        def report(elapsed: float) -> None:
            self._reap_acks()
            progress(f"{label}: {elapsed:.1f}/{seconds:g}s, backlog {self.published - self.received:,}")

        return await paced(rate, seconds, self._publish_one, report)

    async def drain(self, timeout: float, progress: ProgressFn, label: str) -> tuple[bool, float]:
        """Wait until every published tick is stored and has come back as a quote."""
        t0 = asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.js.publish_async_completed(), timeout)
        self._reap_acks()
        return await wait_until(
            lambda: self.received >= self.published - self.publish_errors,
            timeout,
            lambda: progress(f"{label}: draining, backlog {self.published - self.received:,}"),
            0.005,
            since=t0,
        )


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
    url: str, messages: int, payload_bytes: int, rounds: int = 1, progress: ProgressFn = no_progress
) -> BaselineResult:
    """Raw nats-py: one connection publishes ``messages`` on core NATS, another receives them.

    Both connections use nats-py's defaults and share this process's event loop, like
    the pipeline's driver. The publisher writes as fast as nats-py lets it and flushes
    once a second; a round's rate is messages received over first publish -> last
    receive. The best of ``rounds`` is the baseline (the other rounds are kept).
    """
    pub = await connect_nats(url, "bench-baseline-pub", pending_size=None)
    sub = await connect_nats(url, "bench-baseline-sub", pending_size=None)
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
        await close_nats(pub)
        await close_nats(sub)
    assert best is not None
    rate, count, elapsed = best
    return BaselineResult(messages, payload_bytes, round(elapsed, 4), round(rate, 1), messages - count, rates)


# --- the run -----------------------------------------------------------------------------


@dataclass
class BenchOptions:
    """What ``bench ticks`` runs: the rates stepped through, how long each, the baseline's size."""

    rates: list[int] = field(default_factory=lambda: list(DEFAULT_RATES))
    seconds: float = DEFAULT_SECONDS
    symbols: int = DEFAULT_SYMBOLS
    baseline_messages: int = DEFAULT_BASELINE_MESSAGES
    baseline_rounds: int = 3
    probe: bool = True
    """After the first step that falls behind, try rates just below what it delivered."""
    backlog: int = 0
    """Ticks stored before the processor starts, whose catch-up is timed (0: none)."""
    drain_timeout: float | None = None
    """Seconds to wait for a step's backlog (default: 2 x the step, at least 10 s)."""

    @classmethod
    def quick(cls) -> BenchOptions:
        return cls(
            rates=list(QUICK_RATES), seconds=QUICK_SECONDS, baseline_messages=50_000, baseline_rounds=1, probe=False
        )


class TickBench(PrivateStack[T]):
    """The steps of a run, on the processor daemons in :attr:`processors`; a subclass's ``run`` starts them."""

    def __init__(self, opts: BenchOptions, home: Path, progress: ProgressFn) -> None:
        super().__init__(home, progress)
        self.opts = opts
        self.symbols = bench_symbols(opts.symbols)
        self.processors = ["processor"]
        """The processor daemons running (their status files give each step's batches and ticks)."""

    # steps ----------------------------------------------------------------------------

    async def step(
        self, driver: Driver, cpu: CpuMeter, waits: SchedWaitMeter, rate: float, label: str, probe: bool = False
    ) -> StepResult:
        opts = self.opts
        before = self.processor_counters()
        driver.latencies = []
        received0 = driver.received
        cpu.start()
        waits.start()
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
        waited = waits.stop()
        self.check_alive(*self.processors)
        lat = sorted(driver.latencies)
        driver.latencies = []
        await asyncio.sleep(1.1)  # let the processor rewrite its status file
        after = self.processor_counters()
        done = {name: after[name].get("ticks", 0) - before[name].get("ticks", 0) for name in self.processors}
        batches = sum(after[name].get("batches", 0) - before[name].get("batches", 0) for name in self.processors)
        ticks = sum(done.values())
        delivered_per_s = delivered / elapsed if elapsed > 0 else 0.0
        return StepResult(
            offered_per_s=float(rate),
            seconds=round(elapsed, 3),
            published=published,
            published_per_s=round(published / elapsed, 1) if elapsed > 0 else 0.0,
            delivered=delivered,
            delivered_per_s=round(delivered_per_s, 1),
            quotes=len(lat),
            p50_ms=pct_ms(lat, 0.50),
            p99_ms=pct_ms(lat, 0.99),
            max_ms=ns_to_ms(lat[-1]) if lat else None,
            drained=drained,
            drain_s=round(drain_s, 3),
            kept_up=drained and delivered_per_s >= KEEP_UP_FRACTION * rate,
            probe=probe,
            avg_batch=round(ticks / batches, 1) if batches > 0 and ticks > 0 else None,
            processor_ticks=done,
            cpu=usage,
            run_queue_wait=waited,
        )

    def processor_counters(self) -> dict[str, dict[str, int]]:
        """Each running processor's counters, from its status file."""
        run = self.home / "run"
        return {name: (read_status(run / f"{name}.json") or {}).get("counters", {}) for name in self.processors}

    async def store_backlog(self, driver: Driver, count: int) -> None:
        """``count`` ticks into the stream as fast as JetStream takes them (no processor yet)."""
        for i in range(count):
            await driver._publish_one()
            if i % 5000 == 4999:
                self.progress(f"catch-up: {i + 1:,}/{count:,} ticks stored")
                await driver.js.publish_async_completed()
        await driver.js.publish_async_completed()
        driver._reap_acks()

    async def catch_up(self, driver: Driver, cpu: CpuMeter, waits: SchedWaitMeter, count: int) -> CatchUpResult:
        """Time the processor through the stored backlog, from its first quote to its last."""
        status_path = self.home / "run" / "processor.json"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(60.0, count / 1000)
        while driver.first_quote_at is None and loop.time() < deadline:
            await asyncio.sleep(0.001)
        cpu.start()
        waits.start()
        before = (read_status(status_path) or {}).get("counters", {})
        drained, _ = await wait_until(
            lambda: driver.received >= count,
            max(0.0, deadline - loop.time()),
            lambda: self.progress(f"catch-up: {driver.received:,}/{count:,} quotes"),
            0.002,
        )
        usage, waited = cpu.stop(), waits.stop()
        if not drained:
            raise BenchError(f"catch-up: {driver.received:,} of {count:,} stored ticks came back as quotes")
        await asyncio.sleep(1.1)  # let the processor rewrite its status file
        after = (read_status(status_path) or {}).get("counters", {})
        batches = after.get("batches", 0) - before.get("batches", 0)
        ticks = after.get("ticks", 0) - before.get("ticks", 0)
        assert driver.first_quote_at is not None
        seconds = driver.last_quote_at - driver.first_quote_at
        return CatchUpResult(
            ticks=count,
            seconds=round(seconds, 3),
            ticks_per_s=round((count - 1) / seconds, 1) if seconds > 0 else 0.0,
            cpu=usage,
            run_queue_wait=waited,
            avg_batch=round(ticks / batches, 1) if batches > 0 and ticks > 0 else None,
        )

    async def warm_up(self, driver: Driver) -> None:
        """A few hundred ticks first: the processor loads each symbol once, caches fill."""
        self.progress("warming up")
        await driver.offer(500.0, 1.0, no_progress, "warm-up")
        drained, _ = await driver.drain(15.0, no_progress, "warm-up")
        if not drained:
            raise BenchError(
                f"the processor returned {driver.received} of {driver.published} warm-up ticks within 15s",
                self.procs.log_tail("processor") or None,
            )

    async def probe(self, driver: Driver, cpu: CpuMeter, waits: SchedWaitMeter, steps: list[StepResult]) -> None:
        """Try rates just below the saturated throughput, so 'sustained' is not just a ladder rung."""
        if not self.opts.probe:
            return
        floor = max((s.offered_per_s for s in steps if s.kept_up), default=0.0)
        saturated = steps[-1].delivered_per_s
        for factor in (0.9, 0.75):
            rate = round(saturated * factor, -2)
            if rate <= floor * 1.05 or rate < 100:
                return
            result = await self.step(driver, cpu, waits, rate, f"probe: {rate:,.0f} ticks/s", probe=True)
            steps.append(result)
            if result.kept_up or not result.drained:
                return


class _Bench(TickBench[BenchResult]):
    """The servers, the processor daemon and the driver of one run."""

    async def run(self) -> BenchResult:
        opts = self.opts
        nats_url, redis_url = self.start_servers()
        payload_bytes = len(encode(Tick(self.symbols[0], "228.50", time.time_ns(), 1, 10)))
        baseline = await measure_baseline(
            nats_url, opts.baseline_messages, payload_bytes, opts.baseline_rounds, self.progress
        )

        settings = self.settings(nats_url, redis_url, symbols=self.symbols)
        pub = await connect_nats(nats_url, "bench-ticks")
        sub = await connect_nats(nats_url, "bench-quotes")
        try:
            driver = Driver(pub, sub, self.symbols, settings)
            try:
                await driver.setup()
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                raise BenchError(f"cannot create the tick stream: {exc}") from None
            if opts.backlog:
                await self.store_backlog(driver, opts.backlog)
            await self.start_daemons(settings, ["processor"], PROCESSOR_START_TIMEOUT)
            # The processor first: its column leads the CPU table and the --json ``cpu`` of each step.
            pids = {"processor": self.pids["processor"], **self.meter_pids()}
            cpu, waits = CpuMeter(pids), SchedWaitMeter({"processor": self.pids["processor"]})
            caught_up = await self.catch_up(driver, cpu, waits, opts.backlog) if opts.backlog else None
            await self.warm_up(driver)

            async def step(rate: int, label: str) -> StepResult:
                return await self.step(driver, cpu, waits, rate, label)

            steps, skipped = await step_ladder(opts.rates, "ticks", step)
            if steps and not steps[-1].kept_up and steps[-1].drained:
                await self.probe(driver, cpu, waits, steps)
            return BenchResult(steps, baseline, self.symbols, opts.seconds, skipped, catch_up=caught_up)
        finally:
            await close_nats(pub)
            await close_nats(sub)


def run_ticks_bench(opts: BenchOptions | None = None, progress: ProgressFn | None = None) -> BenchResult:
    """Run the whole benchmark on private servers; every process it starts is stopped."""
    opts = opts or BenchOptions()
    if opts.seconds <= 0:
        raise UsageError("--seconds must be above 0")
    if opts.backlog < 0:
        raise UsageError("--backlog must be 0 or more")
    if opts.baseline_messages < 1:
        raise UsageError("--baseline-messages must be at least 1")
    report = progress or no_progress
    return run_private(
        "stockctl-bench-",
        lambda home: _Bench(opts, home, report),
        report,
        "stopping the benchmark's servers",
        stop_on_sigterm=False,  # kept as it was: a SIGTERM ends it at once, the kernel then stops its children
    )


__all__ = [
    "DEFAULT_RATES",
    "QUICK_RATES",
    "BaselineResult",
    "BenchError",
    "BenchOptions",
    "BenchResult",
    "CatchUpResult",
    "StepResult",
    "TickBench",
    "measure_baseline",
    "parse_rates",
    "percentile",
    "run_ticks_bench",
]
