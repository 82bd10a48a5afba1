"""``stockctl bench ticks --cluster``: the tick pipeline on an ``up --cluster`` cluster, 1 processor then 2.

Contract: one run, in a temporary home, on the cluster :class:`~stockctl.bench.cluster.Cluster`
builds (3 nats-server nodes, every stream at R3; a Valkey Cluster of 3 primaries and 3 replicas),
none of it shared with a running instance. In that run, in this order:

* the raw baselines on the same cluster: nats-py core publish -> subscribe
  (:func:`~stockctl.bench.ticks.measure_baseline`, the figure the pipeline's ratio is over) and
  JetStream ``publish_async`` of tick-sized messages to an R3 scratch stream
  (:func:`~stockctl.bench.orders.measure_js_baseline`), what every stored tick costs at least;
* each configuration of :data:`CONFIGS` in turn, on one tick stream and one driver: its
  processors started (the plan's ``processor-1``, then ``processor-2`` beside it), the run waits
  until their leases split the partitions between them (every partition held, by one), warms
  up, then steps up the offered rates as ``bench ticks`` does (:class:`~stockctl.bench.ticks.TickBench`),
  probing below the first rate that falls behind.

Each step records the cores every process used (each node, each processor, this process as
``bench``, and ``other``: the rest of the machine) and the ticks each processor applied. The
headline of a configuration is its sustained rate, the p99 at its latency step, and the CPU of
its sustained step. The machine has few cores: a second processor gains only what the CPU the
nodes leave allows, and the figures say what it was.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import nats.errors
import nats.js.errors

from stockctl.bench.cluster import (
    Cluster,
    cluster_doc,
    cluster_ports,
    idle_cpu,
    load_avg,
    load_doc,
    sustained_step,
)
from stockctl.bench.cpu import CpuMeter, SchedWaitMeter
from stockctl.bench.kit import (
    BenchError,
    ProgressFn,
    close_nats,
    connect_nats,
    machine_doc,
    no_progress,
    run_private,
    step_ladder,
    steps_doc,
)
from stockctl.bench.orders import JsBaseline, measure_js_baseline
from stockctl.bench.ticks import (
    PROCESSOR_START_TIMEOUT,
    BaselineResult,
    BenchOptions,
    BenchResult,
    Driver,
    StepResult,
    TickBench,
    measure_baseline,
)
from stockctl.errors import UsageError
from stockctl.wire.marketdata import Tick, encode

CLUSTER_RATES: tuple[int, ...] = (1_000, 2_000, 3_000, 4_000, 6_000, 8_000, 10_000, 15_000, 20_000)
"""The default ladder with ``--cluster``: finer than ``bench ticks``'s (1,000, 5,000, 10,000...), so that
two configurations a few thousand ticks/s apart are told apart by the steps, not by where a probe lands."""
DEFAULT_SYMBOLS = 16
"""Enough symbols that every one of the 8 partitions has some, so either processor's share has work."""
SPLIT_TIMEOUT = 60.0
"""Seconds for the processors' leases to split the partitions (a lease step is a third of the lease time)."""


@dataclass(frozen=True)
class ProcessorsConfig:
    """One configuration measured: the processors of the plan that run."""

    name: str
    processors: tuple[str, ...]


CONFIGS: tuple[ProcessorsConfig, ...] = (
    ProcessorsConfig("1 processor", ("processor-1",)),
    ProcessorsConfig("2 processors", ("processor-1", "processor-2")),
)
"""Run in turn; each adds to the processors of the one before it."""


@dataclass
class TicksPhase:
    """One configuration's ladder: the steps, and the partitions each processor held."""

    name: str
    processors: list[str]
    partitions: dict[str, list[int]]
    ladder: BenchResult
    """The steps as ``bench ticks`` has them (its baseline: the run's core NATS one)."""
    idle: dict[str, float] = field(default_factory=dict)
    """Cores each process used with nothing offered, before the steps (:func:`~stockctl.bench.cluster.idle_cpu`)."""

    def to_doc(self, js_baseline: JsBaseline) -> dict[str, Any]:
        r, lat, at = self.ladder, self.ladder.latency_step, sustained_step(self.ladder)
        return {
            "name": self.name,
            "processors": self.processors,
            "partitions": self.partitions,
            "ticks_per_s": round(r.sustained, 1),
            "p50_ms": lat.p50_ms if lat else None,
            "p99_ms": lat.p99_ms if lat else None,
            "latency_at_ticks_per_s": lat.offered_per_s if lat else None,
            "max_delivered_ticks_per_s": round(r.max_delivered, 1),
            "ratio": round(r.ratio, 4),
            "js_ratio": round(r.sustained / js_baseline.msgs_per_s, 4) if js_baseline.msgs_per_s else 0.0,
            "cpu_at_ticks_per_s": at.offered_per_s if at else None,
            "cpu": at.cpu if at else {},
            "idle_cpu": self.idle,
            "processor_ticks": at.processor_ticks if at else {},
            "steps": steps_doc(r.steps),
            "skipped_rates": r.skipped_rates,
        }


@dataclass
class ClusterTicksResult:
    """What ``bench ticks --cluster`` measured: the baselines, then each configuration."""

    baseline: BaselineResult
    js_baseline: JsBaseline
    phases: list[TicksPhase]
    symbols: list[str]
    seconds: float
    cluster: dict[str, Any]
    elapsed_s: float = 0.0
    load_start: float | None = None
    load_end: float | None = None

    @property
    def scaling(self) -> float | None:
        """Sustained with the last configuration over the first (2 processors over 1)."""
        first, last = self.phases[0].ladder.sustained, self.phases[-1].ladder.sustained
        return round(last / first, 3) if len(self.phases) > 1 and first > 0 else None

    def to_doc(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "cluster": self.cluster,
            "baseline_msgs_per_s": round(self.baseline.msgs_per_s, 1),
            "js_baseline_msgs_per_s": round(self.js_baseline.msgs_per_s, 1),
            "configs": [p.to_doc(self.js_baseline) for p in self.phases],
            "scaling": self.scaling,
            "baseline": asdict(self.baseline),
            "js_baseline": asdict(self.js_baseline),
            "symbols": self.symbols,
            "seconds_per_step": self.seconds,
            "elapsed_s": round(self.elapsed_s, 1),
            "machine": machine_doc(**load_doc(self.load_start, self.load_end)),
        }


class _ClusterTicks(TickBench[ClusterTicksResult]):
    """The cluster, the processors of each configuration in turn, and one driver."""

    async def wait_split(self, cl: Cluster, names: list[str]) -> dict[str, list[int]]:
        """Until every partition is held by exactly one of ``names`` and each holds some: who holds which."""
        total = cl.settings.partitions
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SPLIT_TIMEOUT
        while True:
            held = {n: sorted(cl.status_info(n).get("partitions") or []) for n in names}
            flat = [p for ps in held.values() for p in ps]
            if len(flat) == total and len(set(flat)) == total and all(held.values()):
                return held
            if loop.time() > deadline:
                raise BenchError(f"the leases did not split the {total} partitions in {SPLIT_TIMEOUT:g}s: {held}")
            self.progress(f"waiting for {', '.join(names)} to split the partitions: {held}")
            await asyncio.sleep(0.2)

    async def phase(
        self, cl: Cluster, driver: Driver, config: ProcessorsConfig, baseline: BaselineResult
    ) -> TicksPhase:
        opts = self.opts
        new = [n for n in config.processors if n not in self.daemons]
        await cl.start_daemons(new, PROCESSOR_START_TIMEOUT)
        self.processors = list(config.processors)
        partitions = await self.wait_split(cl, self.processors)
        procs = {n: self.pids[n] for n in self.processors}
        # The processors first, then the nodes, then this process and the rest of the machine.
        cpu = CpuMeter({**procs, **cl.node_pids(), "bench": self.meter_pids()["bench"]})
        waits = SchedWaitMeter(procs)
        await self.warm_up(driver)
        idle = await idle_cpu(cpu)

        async def step(rate: int, label: str) -> StepResult:
            return await self.step(driver, cpu, waits, rate, f"{config.name}, {label}")

        steps, skipped = await step_ladder(opts.rates, "ticks", step)
        if steps and not steps[-1].kept_up and steps[-1].drained:
            await self.probe(driver, cpu, waits, steps)
        ladder = BenchResult(steps, baseline, self.symbols, opts.seconds, skipped)
        return TicksPhase(config.name, list(config.processors), partitions, ladder, idle)

    async def run(self) -> ClusterTicksResult:
        opts = self.opts
        load_start = load_avg()
        settings = self.settings(
            None, None, cluster=True, stream_replicas=3, symbols=self.symbols, **cluster_ports(self.host)
        )
        cl = Cluster(self, settings)
        await cl.start()
        url = cl.nats_url
        payload = encode(Tick(self.symbols[0], "228.50", time.time_ns(), 1, 10))
        rounds = opts.baseline_rounds
        baseline = await measure_baseline(url, opts.baseline_messages, len(payload), rounds, self.progress)
        js_messages = max(1000, opts.baseline_messages // 4)
        js_baseline = await measure_js_baseline(
            url, js_messages, payload, opts.baseline_rounds, self.progress, replicas=settings.stream_replicas
        )
        pub = await connect_nats(url, "bench-ticks")
        sub = await connect_nats(url, "bench-quotes")
        try:
            driver = Driver(pub, sub, self.symbols, settings)
            try:
                await driver.setup()
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                raise BenchError(f"cannot create the tick stream: {exc}") from None
            phases = [await self.phase(cl, driver, config, baseline) for config in CONFIGS]
        finally:
            await close_nats(pub)
            await close_nats(sub)
        return ClusterTicksResult(
            baseline,
            js_baseline,
            phases,
            self.symbols,
            opts.seconds,
            cluster_doc(settings),
            load_start=load_start,
            load_end=load_avg(),
        )


def run_ticks_cluster_bench(opts: BenchOptions, progress: ProgressFn | None = None) -> ClusterTicksResult:
    """Run the whole benchmark on a private cluster; every process it starts is stopped."""
    if opts.seconds <= 0:
        raise UsageError("--seconds must be above 0")
    if opts.backlog:
        raise UsageError("--backlog is not measured with --cluster", "drop one of them")
    report = progress or no_progress
    return run_private(
        "stockctl-bench-",
        lambda home: _ClusterTicks(opts, home, report),
        report,
        "stopping the benchmark's cluster",
    )


__all__ = [
    "CLUSTER_RATES",
    "CONFIGS",
    "DEFAULT_SYMBOLS",
    "ClusterTicksResult",
    "ProcessorsConfig",
    "TicksPhase",
    "run_ticks_cluster_bench",
]
