"""``stockctl bench orders``: orders end to end, from submission to the reply that acknowledges them.

Everything runs on private servers in a temporary directory (a running instance is never
touched): a nats-server (JetStream) and a valkey-server started the way the supervisor
starts them (:mod:`stockctl.instance.infra`), and the real matching daemon (``python -m daemons
matching``, configured through :meth:`Settings.to_env`). No liquidity daemon: the book holds
only the benchmark's own orders.

The driver submits commands exactly as the gateway does (:meth:`ExchangeApi.submit`):
JetStream ``ex.order.<MKT>`` with ``Nats-Msg-Id = user:client_order_id`` and the
``Stockctl-Reply`` header naming an inbox; one wildcard subscription receives the replies.
The matching daemon replies once the command's events are stored in ``EX_EVENTS`` (and the
Redis views written), so the reply is the acknowledgement a client waits for, and the ack
latency is submission -> reply. With ``--via-gateway`` the orders go through the gateway's
``POST /api/v1/orders`` (and ``DELETE`` for cancels) instead, from a few keep-alive HTTP
connections, so the figures include HTTP, token checks and the gateway's own NATS round trip.

A few bench users are funded first (``Fund`` commands, as the gateway funds a new account).
The flow then mixes passive limit orders near a drifting mid, crossing limit orders (half of
them IOC) that trade against them, and cancels of the driver's own live orders (learnt from
the replies). Offered rates are stepped up, each held for ``seconds`` and then drained; once
a step falls behind, higher rates are skipped. The baseline, measured on the same server in
the same run before the daemon starts, is raw JetStream: ``publish_async`` of order-sized
messages with ``Nats-Msg-Id`` headers to a scratch file stream, pipelined, every ack awaited;
plus the round trip of one synchronous ``publish`` (the least an acknowledged command costs).

:class:`OrdersStack` holds the users, the warm-up and the steps; ``bench orders --cluster``
(:mod:`stockctl.bench.orders_cluster`) runs them on a cluster, its baseline on an R3 stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js import api

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
    fmt_ms,
    fmt_num,
    kept_up_cell,
    machine_doc,
    no_progress,
    ns_to_ms,
    paced,
    parse_rates,
    pct_ms,
    price_text,
    register_user,
    run_private,
    step_ladder,
    steps_doc,
    steps_table,
)
from stockctl.bench.submitters import (
    BENCH_ASSET_UNITS,
    BENCH_BASE_UNITS,
    DEFAULT_SEED,
    MAX_PENDING,
    MID_TICKS,
    MSG_ID,
    HttpSubmitter,
    NatsSubmitter,
    OrderFlow,
    Submitter,
    fund_command,
)
from stockctl.errors import UsageError
from stockctl.settings import Settings
from stockctl.wire.exchange import (
    DEFAULT_MARKETS,
    Place,
    encode,
)

if TYPE_CHECKING:
    from rich.table import Table

DEFAULT_RATES: tuple[int, ...] = (500, 1_000, 2_000, 5_000, 10_000, 17_000)
"""Up to half the raw JetStream rate on this class of machine (~34k msgs/s), so the ratio target can be met."""
DEFAULT_SECONDS = 5.0
QUICK_RATES: tuple[int, ...] = (200, 500)
QUICK_SECONDS = 2.0
DEFAULT_USERS = 8
GATEWAY_USERS = 4
DEFAULT_BASELINE_MESSAGES = 50_000
QUICK_BASELINE_MESSAGES = 10_000
RTT_SAMPLES = 2_000
HTTP_CONNECTIONS = 32

TARGET_RATE = 2_000
"""The offered rate the latency target applies to, orders/s."""
TARGET_P99_MS = 5.0
"""p99 ack latency at TARGET_RATE, below."""
TARGET_P99_MS_FAST = 10.0
"""p99 ack latency at 5,000 orders/s, below."""
LATENCY_TARGETS: tuple[LatencyTarget, ...] = (
    LatencyTarget(TARGET_RATE, TARGET_P99_MS),
    LatencyTarget(5_000, TARGET_P99_MS_FAST),
)
TARGET_RATIO = 0.5
"""Sustained orders/s over the raw JetStream publish rate, at least."""
KEEP_UP_FRACTION = 0.95
"""A step keeps up when it sends and gets acks for at least this share of its offered rate (and drains)."""


DAEMON_START_TIMEOUT = 30.0
FUND_TIMEOUT = 15.0
SCRATCH_STREAM = "BENCH_ORDERS_SCRATCH"
SCRATCH_SUBJECT = "bench.scratch"

T = TypeVar("T", bound=Timed)


# --- results -----------------------------------------------------------------------------


@dataclass
class OrdersStep:
    """One offered rate, held for ``seconds``, then drained."""

    offered_per_s: float
    seconds: float
    """How long commands were offered (the sending window)."""
    sent: int
    sent_per_s: float
    acked: int
    """Commands whose reply came back (the drain included)."""
    orders_per_s: float
    """Acked commands over first submission -> last reply: what the system delivered."""
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    drained: bool
    drain_s: float
    kept_up: bool
    errors: int = 0
    """Commands that failed (a JetStream publish error, an HTTP error): never acknowledged."""
    commands: dict[str, int] = field(default_factory=dict)
    """What was sent: passive / crossing limit orders, cancels."""
    outcome: dict[str, int] = field(default_factory=dict)
    """What the replies said: accepted, rejected (by code), trades, cancelled."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used during the step, per process (Linux only)."""
    cpu_wait: dict[str, float] = field(default_factory=dict)
    """Cores' worth of time each process was runnable but waiting for a CPU (Linux schedstat): a busy machine."""

    @property
    def driver_limited(self) -> bool:
        return self.sent_per_s < KEEP_UP_FRACTION * self.offered_per_s


@dataclass
class JsBaseline:
    """Raw JetStream on the same server: pipelined publish_async (rate) and one publish (round trip)."""

    messages: int
    payload_bytes: int
    seconds: float
    """Duration of the best round."""
    msgs_per_s: float
    """Acked messages per second, best round: the baseline."""
    rounds: list[float] = field(default_factory=list)
    rtt_samples: int = 0
    rtt_p50_ms: float | None = None
    rtt_p99_ms: float | None = None


@dataclass
class OrdersBenchResult(LadderResult):
    """What ``bench orders`` measured: the steps, the raw JetStream baseline, and the figures drawn from them."""

    via: str
    """``nats`` (the gateway's JetStream path, driven directly) or ``gateway`` (HTTP)."""
    steps: list[OrdersStep]
    baseline: JsBaseline
    markets: list[str]
    users: int
    seconds: float
    skipped_rates: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    cpus: int | None = None
    load_avg: float | None = None
    """The 1-minute load average at the end of the run: a busy machine explains slow steps."""

    @staticmethod
    def delivered(step: OrdersStep) -> float:
        return step.orders_per_s

    @property
    def target_step(self) -> OrdersStep | None:
        return next((s for s in self.steps if s.offered_per_s == TARGET_RATE), None)

    @property
    def latency_step(self) -> OrdersStep | None:
        """The TARGET_RATE step; else the highest step that kept up; else the lowest step."""
        with_lat = [s for s in self.steps if s.p99_ms is not None]
        target = self.target_step
        if target is not None and target.p99_ms is not None:
            return target
        kept = [s for s in with_lat if s.kept_up]
        if kept:
            return max(kept, key=lambda s: s.offered_per_s)
        return min(with_lat, key=lambda s: s.offered_per_s, default=None)

    def targets(self) -> dict[str, Any]:
        latency = [target.check(self.steps) for target in LATENCY_TARGETS]
        first = latency[0]  # the TARGET_RATE one, also kept flat: the --json keys before the list
        return {
            "at_orders_per_s": TARGET_RATE,
            "measured": first["measured"],
            "rate_met": first["kept_up"],
            "p99_ms_max": TARGET_P99_MS,
            "p99_ms": first["p99_ms"],
            "p99_met": first["met"],
            "ratio_min": TARGET_RATIO,
            "ratio_met": self.ratio >= TARGET_RATIO,
            "latency": latency,
        }

    def to_doc(self) -> dict[str, Any]:
        """The ``--json`` document."""
        lat = self.latency_step
        return {
            "orders_per_s": round(self.sustained, 1),
            "p50_ms": lat.p50_ms if lat else None,
            "p99_ms": lat.p99_ms if lat else None,
            "max_ms": lat.max_ms if lat else None,
            "latency_at_orders_per_s": lat.offered_per_s if lat else None,
            "max_delivered_orders_per_s": round(self.max_delivered, 1),
            "baseline_msgs_per_s": round(self.baseline.msgs_per_s, 1),
            "baseline_rtt_p50_ms": self.baseline.rtt_p50_ms,
            "ratio": round(self.ratio, 4),
            "via": self.via,
            "targets": self.targets(),
            "steps": steps_doc(self.steps),
            "skipped_rates": self.skipped_rates,
            "baseline": asdict(self.baseline),
            "markets": self.markets,
            "users": self.users,
            "seconds_per_step": self.seconds,
            "elapsed_s": round(self.elapsed_s, 1),
            "machine": machine_doc(cpus=self.cpus, loadavg_1m=self.load_avg),
        }


def parse_order_rates(text: str) -> list[int]:
    """``"500,1k,2000"`` -> ``[500, 1000, 2000]`` (sorted, de-duplicated)."""
    try:
        return parse_rates(text)
    except UsageError as exc:
        raise UsageError(exc.message, "give orders per second, e.g. --rates 500,1000,2k") from None


# --- the baseline ------------------------------------------------------------------------


async def measure_js_baseline(
    url: str, messages: int, payload: bytes, rounds: int = 1, progress: ProgressFn = no_progress, replicas: int = 1
) -> JsBaseline:
    """Raw JetStream on a scratch file stream of ``replicas``: pipelined publish_async (every ack awaited),
    then round trips."""
    nc = await connect_nats(url, "bench-orders-baseline")
    js = nc.jetstream(publish_async_max_pending=MAX_PENDING)
    config = api.StreamConfig(
        name=SCRATCH_STREAM,
        subjects=[f"{SCRATCH_SUBJECT}.>"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        duplicate_window=120.0,
        num_replicas=replicas,
    )
    rates: list[float] = []
    best: tuple[float, float] | None = None
    lat: list[int] = []
    try:
        await js.add_stream(config)
        subject = f"{SCRATCH_SUBJECT}.{DEFAULT_MARKETS[0].symbol}"
        for r in range(1, rounds + 1):
            progress(f"baseline: raw JetStream publish_async, {messages:,} messages, round {r}/{rounds}")
            futures = []
            t0 = time.perf_counter()
            for i in range(messages):
                futures.append(await js.publish_async(subject, payload, headers={MSG_ID: f"r{r}:{i}"}))
            results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 60)
            elapsed = time.perf_counter() - t0
            failed = sum(1 for x in results if isinstance(x, BaseException))
            if failed:
                raise BenchError(f"baseline: {failed:,} of {messages:,} JetStream publishes failed")
            rate = messages / elapsed
            rates.append(round(rate, 1))
            if best is None or rate > best[0]:
                best = (rate, elapsed)
        progress(f"baseline: {RTT_SAMPLES:,} JetStream publish round trips")
        clock = time.perf_counter_ns
        for i in range(RTT_SAMPLES):
            t = clock()
            await js.publish(subject, payload, headers={MSG_ID: f"rtt:{i}"}, timeout=5)
            lat.append(clock() - t)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
        raise BenchError(f"baseline: JetStream failed: {exc.__class__.__name__}: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(SCRATCH_STREAM)
        await close_nats(nc)
    assert best is not None
    lat.sort()
    return JsBaseline(
        messages=messages,
        payload_bytes=len(payload),
        seconds=round(best[1], 4),
        msgs_per_s=round(best[0], 1),
        rounds=rates,
        rtt_samples=len(lat),
        rtt_p50_ms=pct_ms(lat, 0.50),
        rtt_p99_ms=pct_ms(lat, 0.99),
    )


# --- the run -----------------------------------------------------------------------------


@dataclass
class OrdersBenchOptions:
    """What ``bench orders`` runs: the rates stepped through, how long each, the path and the users."""

    rates: list[int] = field(default_factory=lambda: list(DEFAULT_RATES))
    seconds: float = DEFAULT_SECONDS
    users: int = DEFAULT_USERS
    seed: int = DEFAULT_SEED
    via_gateway: bool = False
    connections: int = HTTP_CONNECTIONS
    """Keep-alive HTTP connections (``--via-gateway``)."""
    baseline_messages: int = DEFAULT_BASELINE_MESSAGES
    baseline_rounds: int = 2
    warmup_s: float = 1.0
    drain_timeout: float | None = None
    """Seconds to wait for a step's outstanding commands (default: 2 x the step, at least 10 s)."""

    @classmethod
    def quick(cls) -> OrdersBenchOptions:
        return cls(
            rates=list(QUICK_RATES),
            seconds=QUICK_SECONDS,
            baseline_messages=QUICK_BASELINE_MESSAGES,
            baseline_rounds=1,
        )

    def check(self) -> None:
        if self.seconds <= 0:
            raise UsageError("--seconds must be above 0")
        if not self.rates:
            raise UsageError("--rates is empty", "e.g. --rates 500,1000,2000")
        if self.users < 2:
            raise UsageError("--users must be at least 2", "trades need a buyer and a seller")
        if self.baseline_messages < 1:
            raise UsageError("--baseline-messages must be at least 1")
        if self.connections < 1:
            raise UsageError("--connections must be at least 1")


class OrdersStack(PrivateStack[T]):
    """The users, the warm-up and the steps of a run; a subclass's ``run`` starts the servers and daemons."""

    def __init__(self, opts: OrdersBenchOptions, home: Path, progress: ProgressFn) -> None:
        super().__init__(home, progress)
        self.opts = opts

    def bench_settings(self, nats_url: str | None, redis_url: str | None, **fields: Any) -> Settings:
        """The daemons' settings; ``fields`` (ports included) add to them or replace them."""
        assets = sorted({m.base for m in DEFAULT_MARKETS} | {m.quote for m in DEFAULT_MARKETS})
        fields = {**self.service_ports(), **fields}
        return self.settings(
            nats_url,
            redis_url,
            **fields,
            auth_url=None,
            access_token_ttl_s=3600,
            # What the gateway credits each new (bench) account with, in --via-gateway.
            demo_balances={a: BENCH_ASSET_UNITS.get(a, BENCH_BASE_UNITS) for a in assets},
            liquidity=False,
            publish_limit=None,
        )

    # users -----------------------------------------------------------------------------

    async def fund_users(self, sub: NatsSubmitter, users: list[str]) -> None:
        """Fund every bench user as the gateway funds a new account: a Fund command, its reply awaited."""
        self.progress(f"funding {len(users)} bench users")
        for user in users:
            await sub.submit(fund_command(user, DEFAULT_MARKETS), "fund")
        drained, _ = await sub.drain(FUND_TIMEOUT, no_progress, "funding")
        funded = sub.flow.outcome["funded"]
        if not drained or funded != len(users):
            raise BenchError(
                f"{funded} of {len(users)} bench users funded within {FUND_TIMEOUT:g}s",
                self.procs.log_tail("matching") or None,
            )

    async def register_users(self, settings: Settings, count: int) -> dict[str, str]:
        """Register ``count`` users through the gateway; their access tokens, by email."""
        import httpx

        self.progress(f"registering {count} bench users")
        tokens = {}
        async with httpx.AsyncClient(base_url=settings.gateway_url, timeout=10) as http:
            for i in range(count):
                email = f"bench{i:02d}@example.com"
                tokens[email] = await register_user(http, email, "a bench user")
        return tokens

    # steps -----------------------------------------------------------------------------

    async def offer(self, sub: Submitter, rate: float, seconds: float, label: str) -> tuple[int, float]:
        """Submit commands at ``rate``/s for ``seconds``; (sent, elapsed)."""
        next_cmd, clock = sub.flow.next, time.time_ns

        async def send() -> None:
            cmd = next_cmd(clock())
            await sub.submit(cmd, cmd.client_order_id if isinstance(cmd, Place) else cmd.request_id)

        def report(elapsed: float) -> None:
            sub.reap()
            self.progress(f"{label}: {elapsed:.1f}/{seconds:g}s, {sub.outstanding:,} awaiting their reply")

        return await paced(rate, seconds, send, report)

    async def step(self, sub: Submitter, cpu: CpuMeter, waits: SchedWaitMeter, rate: float, label: str) -> OrdersStep:
        opts = self.opts
        flow = sub.flow
        sub.reset()
        sent0, outcome0 = Counter(flow.sent), Counter(flow.outcome)
        cpu.start()
        waits.start()
        try:
            sent, elapsed = await asyncio.wait_for(self.offer(sub, rate, opts.seconds, label), opts.seconds + 30)
        except TimeoutError:
            raise BenchError(f"{label}: submitting stalled (JetStream stopped acknowledging)") from None
        drain_timeout = opts.drain_timeout if opts.drain_timeout is not None else max(10.0, 2 * opts.seconds)
        drained, drain_s = await sub.drain(drain_timeout, self.progress, label)
        usage = cpu.stop()
        waited = waits.stop()
        self.check_alive()
        lat = sorted(sub.latencies)
        span = (sub.last_ack - sub.first_send) / 1e9 if sub.acked and sub.first_send else 0.0
        if not drained:
            span = elapsed + drain_s
        delivered = sub.acked / span if span > 0 else 0.0
        sent_per_s = sent / elapsed if elapsed > 0 else 0.0
        errors = sub.errors
        return OrdersStep(
            offered_per_s=float(rate),
            seconds=round(elapsed, 3),
            sent=sent,
            sent_per_s=round(sent_per_s, 1),
            acked=sub.acked,
            orders_per_s=round(delivered, 1),
            p50_ms=pct_ms(lat, 0.50),
            p90_ms=pct_ms(lat, 0.90),
            p99_ms=pct_ms(lat, 0.99),
            max_ms=ns_to_ms(lat[-1]) if lat else None,
            mean_ms=ns_to_ms(sum(lat) // len(lat)) if lat else None,
            drained=drained,
            drain_s=round(drain_s, 3),
            kept_up=drained
            and errors == 0
            and sent_per_s >= KEEP_UP_FRACTION * rate
            and delivered >= KEEP_UP_FRACTION * rate,
            errors=errors,
            commands=dict(flow.sent - sent0),
            outcome=dict(sorted((flow.outcome - outcome0).items())),
            cpu=usage,
            cpu_wait=waited,
        )

    async def warm_up(self, sub: Submitter) -> None:
        """Unmeasured: each user's first order (the gateway funds it then), then a second at 200/s."""
        self.progress("warming up")
        flow = sub.flow
        for i, user in enumerate(flow.users):
            mkt = flow.markets[0]
            cmd = Place(user, f"w{i}", mkt, "buy", "limit", "1", time.time_ns(), flow.price(mkt, MID_TICKS - 50))
            await sub.submit(cmd, cmd.client_order_id)
            if not (await sub.drain(FUND_TIMEOUT, no_progress, "warm-up"))[0]:
                raise BenchError(f"the first order of {user} got no reply within {FUND_TIMEOUT:g}s")
        if self.opts.warmup_s > 0:
            await self.offer(sub, 200.0, self.opts.warmup_s, "warm-up")
        drained, _ = await sub.drain(15.0, no_progress, "warm-up")
        if not drained or sub.errors:
            kinds = ", ".join(f"{n} x {k}" for k, n in sub.error_kinds.items()) or "no reply"
            raise BenchError(
                f"warm-up: {sub.outstanding:,} commands unanswered, {sub.errors:,} failed ({kinds})",
                self.procs.log_tail("gateway" if self.opts.via_gateway else "matching") or None,
            )


class _OrdersBench(OrdersStack[OrdersBenchResult]):
    """The servers, the daemons and the order driver of one run."""

    async def run(self) -> OrdersBenchResult:
        opts = self.opts
        nats_url, redis_url = self.start_servers()
        sample = Place(
            "bench-00", "o1234567", DEFAULT_MARKETS[0].symbol, "buy", "limit", "10", time.time_ns(), "100.05"
        )
        baseline = await measure_js_baseline(
            nats_url, opts.baseline_messages, encode(sample), opts.baseline_rounds, self.progress
        )
        settings = self.bench_settings(nats_url, redis_url)
        daemons = ["matching", "auth", "gateway"] if opts.via_gateway else ["matching"]
        await self.start_daemons(settings, daemons, DAEMON_START_TIMEOUT)
        markets = list(DEFAULT_MARKETS)
        nc = await connect_nats(nats_url, "bench-orders")
        sub: Submitter | None = None
        try:
            if opts.via_gateway:
                tokens = await self.register_users(settings, opts.users)
                flow = OrderFlow(list(tokens), markets, opts.seed)
                sub = HttpSubmitter(self.host, settings.gateway_port, tokens, flow, opts.connections)
                await sub.start()
            else:
                users = [f"bench-{i:02d}" for i in range(opts.users)]
                flow = OrderFlow(users, markets, opts.seed)
                nsub = NatsSubmitter(nc, flow)
                sub = nsub
                await nsub.start()
                await self.fund_users(nsub, users)
            await self.warm_up(sub)

            pids = self.meter_pids()
            cpu, waits = CpuMeter(pids), SchedWaitMeter(pids)
            submitter: Submitter = sub  # a closure does not see that ``sub`` is set by now

            async def step(rate: int, label: str) -> OrdersStep:
                await asyncio.sleep(0.3)
                return await self.step(submitter, cpu, waits, rate, label)

            steps, skipped = await step_ladder(opts.rates, "orders", step)
            return OrdersBenchResult(
                via="gateway" if opts.via_gateway else "nats",
                steps=steps,
                baseline=baseline,
                markets=[m.symbol for m in markets],
                users=opts.users,
                seconds=opts.seconds,
                skipped_rates=skipped,
            )
        finally:
            if sub is not None:
                await sub.close()
            await close_nats(nc)


def run_orders_bench(opts: OrdersBenchOptions | None = None, progress: ProgressFn | None = None) -> OrdersBenchResult:
    """Run the whole benchmark on private servers; every process it starts is stopped."""
    opts = opts or OrdersBenchOptions()
    opts.check()
    report = progress or no_progress
    result = run_private(
        "stockctl-bench-orders-",
        lambda home: _OrdersBench(opts, home, report),
        report,
        "stopping the benchmark's daemons and servers",
    )
    result.cpus = os.cpu_count()
    result.load_avg = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return result


def orders_steps_table(title: str, steps: list[OrdersStep]) -> Table:
    """``bench orders``'s steps (:class:`OrdersStep`), one row per offered rate (the CLI's tables)."""
    t = steps_table(title, ("offered/s", "sent/s", "acked/s", "p50 ms", "p99 ms", "max ms", "trades"))
    for s in steps:
        t.add_row(
            fmt_num(s.offered_per_s),
            fmt_num(s.sent_per_s),
            fmt_num(s.orders_per_s),
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms),
            fmt_ms(s.max_ms),
            fmt_num(s.outcome.get("trades", 0)),
            kept_up_cell(s.kept_up, s.drained, s.driver_limited, s.errors),
        )
    return t


__all__ = [
    "DEFAULT_RATES",
    "QUICK_RATES",
    "TARGET_P99_MS",
    "TARGET_RATE",
    "JsBaseline",
    "OrderFlow",
    "OrdersBenchOptions",
    "OrdersBenchResult",
    "OrdersStack",
    "OrdersStep",
    "measure_js_baseline",
    "orders_steps_table",
    "parse_order_rates",
    "price_text",
    "run_orders_bench",
]
