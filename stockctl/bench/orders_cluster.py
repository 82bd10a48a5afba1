"""``stockctl bench orders --cluster``: orders end to end on an ``up --cluster`` cluster, beside raw JetStream R3.

Contract: one run, in a temporary home, on the cluster :class:`~stockctl.bench.cluster.Cluster`
builds (3 nats-server nodes, every stream at R3; a Valkey Cluster of 3 primaries and 3 replicas),
none of it shared with a running instance. In that run, in this order:

* the baseline on the same cluster: raw JetStream ``publish_async`` of order-sized messages to an
  R3 scratch stream, every ack awaited, and the round trip of one ``publish``
  (:func:`~stockctl.bench.orders.measure_js_baseline`);
* each configuration of :data:`CONFIGS` in turn: its matching daemons of the plan started
  (``matching-1`` and ``matching-2``: one leads by its lease, one stands by, as ``up --cluster``
  runs them), the run waits until as many say ``active`` as the configuration has market
  groups, funds the bench users, warms up, then steps up the offered rates as ``bench orders``
  does (:class:`~stockctl.bench.orders.OrdersStack`: commands on JetStream ``ex.order.<MKT>``
  the way the gateway sends them, each timed to its reply). A configuration's daemons are
  stopped, and the exchange emptied, before the next one starts its own.

Each step records the cores every process used: each matching daemon (the standby too), each
node, this process as ``bench``, and ``other`` (the rest of the machine).

Two configurations are measured, each a row of the report beside the other, on the same two
markets (:data:`BENCH_MARKETS`, which share no asset): one market group (both markets led by
one matching daemon), then two (``STOCKCTL_MARKET_GROUPS``: an active matching daemon and a
standby per group). The bench users are funded in every group, as the gateway funds them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

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
from stockctl.bench.orders import (
    DAEMON_START_TIMEOUT,
    FUND_TIMEOUT,
    JsBaseline,
    OrdersBenchOptions,
    OrdersBenchResult,
    OrdersStack,
    OrdersStep,
    measure_js_baseline,
)
from stockctl.bench.submitters import NatsSubmitter, OrderFlow, fund_command
from stockctl.errors import UsageError
from stockctl.exchange.groups import MarketGroups, market_groups, split_funding
from stockctl.wire.exchange import DEFAULT_MARKETS, Fund, MarketSpec, Place, encode

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NATS

CLUSTER_RATES: tuple[int, ...] = (500, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_000, 10_000)
"""The default ladder with ``--cluster``: finer than ``bench orders``'s where a cluster on one machine saturates."""
ROLE_TIMEOUT = 30.0
"""Seconds for the matching daemons to settle who leads (an election is a lease wait at most)."""


@dataclass(frozen=True)
class MatchingConfig:
    """One configuration measured: the matching daemons of the plan that run, and the market groups."""

    name: str
    groups: int
    """Matching daemons that must say ``active`` (one per market group) before it is measured."""
    daemons: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    """Variables its daemons get on top of the plan's (where ``STOCKCTL_MARKET_GROUPS`` would go)."""


AAPL_USD = MarketSpec("AAPL_USD", "AAPL", "USD", "0.05", "1", "1", "100000", "1000000")
BENCH_MARKETS: tuple[MarketSpec, ...] = (DEFAULT_MARKETS[0], AAPL_USD)
"""The markets of every configuration: two that share no asset, so they can be one group or two."""
TWO_GROUPS = "inr=TATA_INR;us=AAPL_USD"

CONFIGS: tuple[MatchingConfig, ...] = (
    MatchingConfig("1 group", 1, ("matching-1", "matching-2")),
    MatchingConfig(
        "2 groups",
        2,
        ("matching-1", "matching-2", "matching-3", "matching-4"),
        (("STOCKCTL_MARKET_GROUPS", TWO_GROUPS),),
    ),
)
"""Run in turn, each a row of the report: both markets led by one matching daemon (its standby
beside it), then split into two groups, each with its own leader and standby (``matching-1``
and ``-3`` serve ``inr``, ``-2`` and ``-4`` ``us``), as ``up --cluster`` runs them."""


@dataclass
class MatchingPhase:
    """One configuration's ladder and which matching daemon had which role."""

    name: str
    groups: int
    roles: dict[str, str]
    ladder: OrdersBenchResult
    idle: dict[str, float] = field(default_factory=dict)
    """Cores each process used with nothing offered, before the steps (:func:`~stockctl.bench.cluster.idle_cpu`)."""

    def to_doc(self) -> dict[str, Any]:
        r, lat, at = self.ladder, self.ladder.latency_step, sustained_step(self.ladder)
        return {
            "name": self.name,
            "groups": self.groups,
            "roles": self.roles,
            "orders_per_s": round(r.sustained, 1),
            "p50_ms": lat.p50_ms if lat else None,
            "p99_ms": lat.p99_ms if lat else None,
            "max_ms": lat.max_ms if lat else None,
            "latency_at_orders_per_s": lat.offered_per_s if lat else None,
            "max_delivered_orders_per_s": round(r.max_delivered, 1),
            "ratio": round(r.ratio, 4),
            "cpu_at_orders_per_s": at.offered_per_s if at else None,
            "cpu": at.cpu if at else {},
            "idle_cpu": self.idle,
            "steps": steps_doc(r.steps),
            "skipped_rates": r.skipped_rates,
        }


@dataclass
class ClusterOrdersResult:
    """What ``bench orders --cluster`` measured: the baseline, then each configuration."""

    baseline: JsBaseline
    phases: list[MatchingPhase]
    markets: list[str]
    users: int
    seconds: float
    cluster: dict[str, Any]
    elapsed_s: float = 0.0
    load_start: float | None = None
    load_end: float | None = None

    def to_doc(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "cluster": self.cluster,
            "via": "nats",
            "baseline_msgs_per_s": round(self.baseline.msgs_per_s, 1),
            "baseline_rtt_p50_ms": self.baseline.rtt_p50_ms,
            "configs": [p.to_doc() for p in self.phases],
            "baseline": asdict(self.baseline),
            "markets": self.markets,
            "users": self.users,
            "seconds_per_step": self.seconds,
            "elapsed_s": round(self.elapsed_s, 1),
            "machine": machine_doc(**load_doc(self.load_start, self.load_end)),
        }


class _ClusterOrders(OrdersStack[ClusterOrdersResult]):
    """The cluster, the matching daemons of each configuration in turn, and the order driver."""

    markets_file: Path
    """:data:`BENCH_MARKETS` as a markets file, which every configuration's daemons read."""

    async def wait_roles(self, cl: Cluster, config: MatchingConfig) -> dict[str, str]:
        """Until ``config.groups`` of its daemons lead and the others stand by: each one's role."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROLE_TIMEOUT
        while True:
            roles = {n: str(cl.status_info(n).get("role") or "") for n in config.daemons}
            active = [n for n, role in roles.items() if role == "active"]
            if len(active) == config.groups and all(r in ("active", "standby") for r in roles.values()):
                return roles
            if loop.time() > deadline:
                raise BenchError(f"{config.name}: matching roles did not settle in {ROLE_TIMEOUT:g}s: {roles}")
            await asyncio.sleep(0.1)

    async def phase(
        self, cl: Cluster, nc: NATS, config: MatchingConfig, baseline: JsBaseline, last: bool
    ) -> MatchingPhase:
        opts = self.opts
        # The plan has matching-1/2 (one group); more groups run more of the same daemon.
        base = {**cl.daemon_envs["matching-1"], "STOCKCTL_MARKETS_FILE": str(self.markets_file)}
        envs = {n: {**cl.daemon_envs.get(n, base), **base, **dict(config.env)} for n in config.daemons}
        cl.daemon_envs.update(envs)
        await cl.start_daemons(list(config.daemons), DAEMON_START_TIMEOUT)
        roles = await self.wait_roles(cl, config)
        users = [f"bench-{i:02d}" for i in range(opts.users)]
        markets = list(BENCH_MARKETS)
        sub = NatsSubmitter(nc, OrderFlow(users, markets, opts.seed))
        await sub.start()
        try:
            await self.fund_groups(
                sub, users, market_groups(dict(config.env).get("STOCKCTL_MARKET_GROUPS", ""), markets)
            )
            await self.warm_up(sub)
            # The matching daemons first (the active one leads), then the nodes, then this process.
            daemons = sorted(config.daemons, key=lambda n: roles[n] != "active")
            pids = {**{n: self.pids[n] for n in daemons}, **cl.node_pids(), "bench": self.meter_pids()["bench"]}
            cpu, waits = CpuMeter(pids), SchedWaitMeter({n: self.pids[n] for n in daemons})
            idle = await idle_cpu(cpu)

            async def step(rate: int, label: str) -> OrdersStep:
                await asyncio.sleep(0.3)
                return await self.step(sub, cpu, waits, rate, f"{config.name}, {label}")

            steps, skipped = await step_ladder(opts.rates, "orders", step)
        finally:
            await sub.close()
        if not last:
            cl.stop_daemons(list(config.daemons))
            await cl.reset_exchange()  # the next configuration starts on an empty exchange
        ladder = OrdersBenchResult("nats", steps, baseline, [m.symbol for m in markets], opts.users, opts.seconds)
        ladder.skipped_rates = skipped
        return MatchingPhase(config.name, config.groups, roles, ladder, idle)

    async def fund_groups(self, sub: NatsSubmitter, users: list[str], groups: MarketGroups) -> None:
        """Fund every bench user in every group, as the gateway does: each group its own assets."""
        self.progress(f"funding {len(users)} bench users in {len(groups.groups)} market group(s)")
        amounts = fund_command("", BENCH_MARKETS).amounts
        for user in users:
            for group, part in split_funding(groups, amounts):
                fund = Fund(user, f"fund-{group.name}", part, time.time_ns(), market=group.accounts_market)
                await sub.submit(fund, fund.request_id)
        drained, _ = await sub.drain(FUND_TIMEOUT, no_progress, "funding")
        funded, want = sub.flow.outcome["funded"], len(users) * len(groups.groups)
        if not drained or funded != want:
            raise BenchError(f"{funded} of {want} fundings done within {FUND_TIMEOUT:g}s")
        sub.flow.outcome["funded"] = 0

    async def run(self) -> ClusterOrdersResult:
        opts = self.opts
        self.markets_file = self.home / "bench-markets.json"
        self.markets_file.write_bytes(msgspec.json.encode(list(BENCH_MARKETS)))
        load_start = load_avg()
        settings = self.bench_settings(None, None, cluster=True, stream_replicas=3, **cluster_ports(self.host))
        cl = Cluster(self, settings)
        await cl.start()
        sample = Place(
            "bench-00", "o1234567", DEFAULT_MARKETS[0].symbol, "buy", "limit", "10", time.time_ns(), "100.05"
        )
        baseline = await measure_js_baseline(
            cl.nats_url,
            opts.baseline_messages,
            encode(sample),
            opts.baseline_rounds,
            self.progress,
            replicas=settings.stream_replicas,
        )
        nc = await connect_nats(cl.nats_url, "bench-orders")
        try:
            phases = [
                await self.phase(cl, nc, config, baseline, last=i == len(CONFIGS) - 1)
                for i, config in enumerate(CONFIGS)
            ]
        finally:
            await close_nats(nc)
        return ClusterOrdersResult(
            baseline,
            phases,
            [m.symbol for m in BENCH_MARKETS],
            opts.users,
            opts.seconds,
            cluster_doc(settings),
            load_start=load_start,
            load_end=load_avg(),
        )


def run_orders_cluster_bench(opts: OrdersBenchOptions, progress: ProgressFn | None = None) -> ClusterOrdersResult:
    """Run the whole benchmark on a private cluster; every process it starts is stopped."""
    opts.check()
    if opts.via_gateway:
        raise UsageError("--via-gateway is not measured with --cluster", "drop one of them")
    report = progress or no_progress
    return run_private(
        "stockctl-bench-orders-",
        lambda home: _ClusterOrders(opts, home, report),
        report,
        "stopping the benchmark's daemons and cluster",
    )


__all__ = [
    "CLUSTER_RATES",
    "CONFIGS",
    "ClusterOrdersResult",
    "MatchingConfig",
    "MatchingPhase",
    "run_orders_cluster_bench",
]
