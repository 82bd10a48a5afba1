"""``stockctl bench ...``: performance measured on this machine, never hoped for."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer

from stockctl.cli.bench_cluster import render_orders_cluster, render_ticks_cluster
from stockctl.cli.bench_tables import render_history, render_matching, render_up
from stockctl.cli.common import JsonOpt, console, err_console, print_json

if TYPE_CHECKING:
    from stockctl.bench.kit import ProgressFn
    from stockctl.bench.orders import OrdersBenchResult
    from stockctl.bench.ticks import BenchResult
    from stockctl.bench.ws import WsBenchResult

app = typer.Typer(no_args_is_help=True)


class _Documented(Protocol):
    def to_doc(self) -> dict[str, Any]: ...


D = TypeVar("D", bound=_Documented)


def _run(name: str, bench: Callable[[ProgressFn], D], render: Callable[[D], None], json_out: bool) -> None:
    """Run ``bench`` under a spinner showing its progress; print its ``--json`` document or its tables."""
    with err_console.status("benchmarking...", spinner="dots") as status:
        result = bench(lambda text: status.update(f"bench {name}: {text}"))
    if json_out:
        print_json(result.to_doc())
        return
    render(result)


def _given(opts: object, **values: Any) -> None:
    """Set the options given on the command line; None (not given) keeps the default, or --quick's value."""
    for key, value in values.items():
        if value is not None:
            setattr(opts, key, value)


def _quick(what: str) -> Any:
    """The ``--quick`` option; ``what`` says what the short run does."""
    return typer.Option("--quick", help=f"A short run ({what}) for smoke tests.")


def _baseline_messages(baseline: str, default: int) -> Any:
    return typer.Option(
        "--baseline-messages", min=1000, help=f"Messages of the raw {baseline} baseline.", show_default=str(default)
    )


StepSecondsOpt = Annotated[
    float | None,
    typer.Option("--seconds", min=0.5, max=600, help="Seconds each rate is held.", show_default="5"),
]


ClusterOpt = Annotated[
    bool,
    typer.Option(
        "--cluster",
        help="Run on the cluster `stockctl up --cluster` runs (3 nats-server nodes, streams at R3; a Valkey"
        " Cluster of 3 primaries and 3 replicas), private, with the baselines on that cluster and the CPU"
        " of every node and daemon.",
    ),
]


@app.command(
    "ticks",
    help="Publisher -> processor throughput and latency, beside the raw NATS baseline.\n\n"
    "Starts a private nats-server, valkey-server and processor daemon in a temporary directory"
    " (a running instance is not touched), offers ticks at increasing rates and times each tick"
    " from its timestamp to its quote. Every process it starts is stopped.\n\n"
    "--cluster: the same on a private `up --cluster` cluster, with 1 processor and then 2 (sharing the"
    " partitions by their leases), beside raw core NATS and raw R3 JetStream publish rates on that"
    " cluster (the JetStream one with a quarter of --baseline-messages), all in one run (--backlog is"
    " not measured there).",
)
def ticks(
    rates: Annotated[
        str | None,
        typer.Option(
            "--rates",
            help="Offered total rates to step through, ticks/s, comma separated (1000,5k,20k).",
            show_default="1000,5000,10000,20000,50000; with --cluster 1000,2000,3000,4000,6000,8000,10000,15000,20000",
        ),
    ] = None,
    seconds: StepSecondsOpt = None,
    symbols: Annotated[
        int | None,
        typer.Option(
            "--symbols", min=1, max=1000, help="Symbols the ticks rotate over.", show_default="5; 16 with --cluster"
        ),
    ] = None,
    baseline_messages: Annotated[int | None, _baseline_messages("NATS", 200_000)] = None,
    probe: Annotated[
        bool,
        typer.Option("--probe/--no-probe", help="Once a rate falls behind, try rates just below what it delivered."),
    ] = True,
    backlog: Annotated[
        int,
        typer.Option(
            "--backlog",
            min=0,
            max=10_000_000,
            help="Ticks stored before the processor starts; its catch-up through them is timed"
            " (what the processor does when it never waits for the driver).",
        ),
    ] = 0,
    quick: Annotated[bool, _quick("500 and 2,000 ticks/s, 2 s each")] = False,
    cluster: ClusterOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Publisher -> processor throughput and latency, beside the raw NATS baseline."""
    from stockctl.bench.ticks import BenchOptions, parse_rates, run_ticks_bench

    opts = BenchOptions.quick() if quick else BenchOptions()
    if cluster:
        from stockctl.bench.ticks_cluster import CLUSTER_RATES, DEFAULT_SYMBOLS

        symbols = DEFAULT_SYMBOLS if symbols is None else symbols
        opts.rates = opts.rates if quick else list(CLUSTER_RATES)
    _given(
        opts,
        rates=parse_rates(rates) if rates is not None else None,
        seconds=seconds,
        baseline_messages=baseline_messages,
        symbols=symbols,
        probe=probe and not quick,
        backlog=backlog,
    )
    if cluster:
        from stockctl.bench.ticks_cluster import run_ticks_cluster_bench

        _run("ticks", lambda progress: run_ticks_cluster_bench(opts, progress), render_ticks_cluster, json_out)
        return
    _run("ticks", lambda progress: run_ticks_bench(opts, progress), render, json_out)


def render(result: BenchResult) -> None:
    """The steps table, where the CPU went, the baseline, and a verdict against the targets."""
    from stockctl.bench.kit import (
        best_of,
        cpu_table,
        fmt_ms,
        fmt_num,
        kept_up_cell,
        latency_verdicts,
        not_run_note,
        pass_fail,
        steps_table,
    )
    from stockctl.bench.ticks import KEEP_UP_FRACTION, TARGET_RATIO

    table = steps_table(
        f"bench ticks: {len(result.symbols)} symbols, {result.seconds:g}s per rate",
        ("offered/s", "sent/s", "quotes/s", "p50 ms", "p99 ms", "max ms", "drain s"),
    )
    for s in result.steps:
        table.add_row(
            fmt_num(s.offered_per_s) + ("[dim]*[/]" if s.probe else ""),
            fmt_num(s.published_per_s),
            fmt_num(s.delivered_per_s),
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms),
            fmt_ms(s.max_ms),
            f"{s.drain_s:.2f}",
            kept_up_cell(s.kept_up, s.drained, s.driver_limited),
        )
    console.print(table)

    cpu = cpu_table(("offered/s", "ticks/batch", "processor", "proc. runq", "nats-server", "valkey", "bench", "other"))
    for s in result.steps:
        cpu.add_row(
            fmt_num(s.offered_per_s) + ("[dim]*[/]" if s.probe else ""),
            fmt_num(s.avg_batch, ",.1f"),
            fmt_num(s.cpu.get("processor"), ".2f"),
            fmt_num(s.run_queue_wait.get("processor"), ".2f"),
            *(fmt_num(s.cpu.get(k), ".2f") for k in ("nats", "valkey", "bench", "other")),
        )
    console.print(cpu)
    console.print("[dim]proc. runq: seconds per second the processor was runnable but waiting for a CPU[/]")
    if any(s.probe for s in result.steps):
        console.print("[dim]* probe: a rate just below what the first saturated rate delivered[/]")
    if result.skipped_rates:
        console.print(not_run_note(result.skipped_rates, "ticks"))

    c = result.catch_up
    if c is not None:
        us = f", {c.cpu_us_per_tick:,.1f} us CPU per tick" if c.cpu_us_per_tick is not None else ""
        console.print(
            f"catch-up             [bold]{c.ticks_per_s:,.0f}[/] ticks/s through {c.ticks:,} stored ticks"
            f" in {c.seconds:.2f}s (processor {fmt_num(c.cpu.get('processor'), '.2f')} cores"
            f" + {fmt_num(c.run_queue_wait.get('processor'), '.2f')} waiting for one{us};"
            f" {fmt_num(c.avg_batch, ',.0f')} ticks/batch; other processes {fmt_num(c.cpu.get('other'), '.2f')})"
        )
    b = result.baseline
    console.print(
        f"sustained pipeline   [bold]{result.sustained:,.0f}[/] ticks/s (max delivered {result.max_delivered:,.0f};"
        f" kept up = quotes >= {KEEP_UP_FRACTION:.0%} of offered and backlog drained)"
    )
    lost = f"; [red]{b.lost:,} lost[/]" if b.lost else ""
    console.print(
        f"raw nats-py baseline [bold]{b.msgs_per_s:,.0f}[/] msgs/s"
        f" ({best_of(b.rounds)}{b.messages:,} x {b.payload_bytes} B"
        f" core publish -> subscribe, same server, same run{lost})"
    )
    console.print(f"ratio                [bold]{result.ratio:.3f}[/]")
    targets = result.targets()
    console.print(
        f"verdict: rate >= {TARGET_RATIO:g} x baseline {pass_fail(targets['ratio_met'])} ({result.ratio:.3f});"
        f" {latency_verdicts(targets['latency'], 'ticks/s')} [dim]in {result.elapsed_s:.0f}s[/]"
    )


@app.command(
    "ws",
    help="Many authenticated WebSocket clients on the gateway: connect time, delivery rate and latency, drops.\n\n"
    "Starts a private nats-server, valkey-server and the processor, publisher, auth and gateway daemons"
    " in a temporary directory (a running instance is not touched), registers a bench user, connects"
    " --clients clients from --workers processes, each subscribed to quotes, and times every quote"
    " from its tick's timestamp to the client for --seconds. Every process it starts is stopped.",
)
def ws(
    clients: Annotated[
        int | None,
        typer.Option("--clients", min=1, max=100_000, help="WebSocket clients.", show_default="1000"),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(
            "--seconds", min=0.5, max=3600, help="Measurement window, after all are connected.", show_default="20"
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", min=0.1, max=1000, help="Ticks (so quotes) per second per symbol.", show_default="5"),
    ] = None,
    symbols: Annotated[
        str | None,
        typer.Option(
            "--symbols",
            help="Symbols published, comma separated; clients are spread over them round-robin.",
            show_default="AAPL,GOOGL,AMZN,MSFT,TSLA",
        ),
    ] = None,
    channels_per_client: Annotated[
        int, typer.Option("--channels-per-client", min=1, help="quotes:SYM channels each client subscribes to.")
    ] = 1,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=64, help="Client processes.", show_default="2")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            max=10_000,
            help="Connections being opened at once, all workers together"
            " (more open faster but each handshake waits longer).",
            show_default="50",
        ),
    ] = None,
    quick: Annotated[bool, _quick("50 clients, 4 s")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Many authenticated WebSocket clients on the gateway: connect time, delivery rate and latency, drops."""
    from stockctl.bench.ws import WsBenchOptions, parse_symbols, run_ws_bench

    opts = WsBenchOptions.quick() if quick else WsBenchOptions()
    _given(
        opts,
        clients=clients,
        seconds=seconds,
        rate=rate,
        symbols=parse_symbols(symbols) if symbols is not None else None,
        channels_per_client=channels_per_client,
        workers=workers,
        concurrency=concurrency,
    )
    _run("ws", lambda progress: run_ws_bench(opts, progress), render_ws, json_out)


BUSY_OTHER_CORES = 0.25
"""Cores used by processes outside the benchmark above which its figures get a warning."""


def render_ws(r: WsBenchResult) -> None:
    """Connections, delivery and latency, where the CPU went, and a verdict against the target."""
    from stockctl.bench.kit import fmt_ms, fmt_num, measure_table, pass_fail
    from stockctl.bench.ws import KEEP_UP_FRACTION, TARGET_CLIENTS, TARGET_P99_MS, TARGET_RATE

    per = f" x {r.channels_per_client} channels" if r.channels_per_client > 1 else ""
    table = measure_table(
        f"bench ws: {r.clients:,} clients{per}, {len(r.symbols)} symbols at {r.rate:g} quotes/s, {r.seconds:g}s window",
        ("what", "value", "note"),
        show_header=False,
    )
    ratio = r.delivered_ratio
    table.add_row("connected", f"{r.connected:,} / {r.clients:,}", f"{r.workers} workers, {r.concurrency:,} at once")
    table.add_row("connect time", f"{r.connect_s:.2f} s", "connect+auth+subscribe")
    table.add_row(
        "  each p50/p99/max",
        f"{fmt_ms(r.connect_p50_ms)} / {fmt_ms(r.connect_p99_ms)} / {fmt_ms(r.connect_max_ms)} ms",
        "",
    )
    table.add_row("delivered", f"{r.msgs_per_s:,.0f} msgs/s", f"{r.quotes:,} quote frames")
    table.add_row(
        "expected",
        f"{r.expected_msgs_per_s:,.0f} msgs/s",
        f"{fmt_num(ratio * 100 if ratio is not None else None, '.1f')}% delivered",
    )
    if r.gateway_frames_per_s is not None:
        table.add_row("gateway frames", f"{r.gateway_frames_per_s:,.0f} /s", "its own counter")
    table.add_row(
        "latency p50/p99/max", f"{fmt_ms(r.p50_ms)} / {fmt_ms(r.p99_ms)} / {fmt_ms(r.max_ms)} ms", "tick ts -> client"
    )
    table.add_row(
        "client lag p99/max",
        f"{fmt_ms(r.client_lag_p99_ms)} / {fmt_ms(r.client_lag_max_ms)} ms",
        "clients' own delay",
    )
    table.add_row(
        "dropped",
        f"[red]{r.dropped:,}[/]" if r.dropped else "0",
        f"{r.failed:,} not connected, {r.closed:,} closed",
    )
    console.print(table)
    for title, reasons in (("connect failures", r.fail_reasons), ("closed", r.close_reasons)):
        if reasons:
            text = "; ".join(f"{n:,} x {why}" for why, n in reasons.items())
            console.print(f"[red]{title}:[/] {text}")

    names = {"gateway": "gateway", "workers": "client workers", "processor": "processor", "publisher": "publisher"}
    names.update({"auth": "auth", "nats": "nats-server", "valkey": "valkey", "bench": "bench"})
    names.update({"irq": "irq+softirq+steal", "other": "other"})
    used = ", ".join(f"{label} {r.cpu[key]:.2f}" for key, label in names.items() if key in r.cpu)
    console.print(f"CPU cores used in the window: {used or '-'}")
    if r.cpu.get("other", 0.0) >= BUSY_OTHER_CORES:
        console.print(
            f"[yellow]the machine was busy: other processes used {r.cpu['other']:.2f} cores in the window;"
            " latency figures are pessimistic[/]"
        )

    t = r.targets()
    console.print(
        f"verdict: {TARGET_CLIENTS:,} clients {pass_fail(t['clients_met'])} ({r.connected:,});"
        f" {TARGET_RATE:g} quotes/s per symbol {pass_fail(t['rate_met'])} ({r.rate:g});"
        f" p99 < {TARGET_P99_MS:g} ms {pass_fail(t['p99_met'])} ({fmt_ms(r.p99_ms)} ms);"
        f" none dropped {pass_fail(t['dropped_met'])} ({r.dropped:,});"
        f" delivered >= {KEEP_UP_FRACTION:.0%} {pass_fail(t['kept_up_met'])}"
        f" [dim]in {r.elapsed_s:.0f}s[/]"
    )


@app.command(
    "feeds",
    help="Frames/s the Binance adapter normalises, beside a raw websockets receive baseline, in process.",
)
def feeds(
    frames: Annotated[
        int | None, typer.Option("--frames", min=1000, max=10_000_000, help="Trade frames sent.", show_default="200000")
    ] = None,
    quick: Annotated[bool, _quick("20,000 frames")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Frames/s the Binance adapter normalises, beside a raw websockets receive baseline, in process."""
    from stockctl.bench.feeds import DEFAULT_FRAMES, QUICK_FRAMES, run_feeds_bench

    count = frames if frames is not None else QUICK_FRAMES if quick else DEFAULT_FRAMES
    with err_console.status("bench feeds...", spinner="dots"):
        result = run_feeds_bench(count)
    if json_out:
        print_json(result.to_doc())
        return
    console.print(
        f"bench feeds: {result.frames:,} Binance trade frames over a local WebSocket\n"
        f"  raw websockets receive   {result.raw_per_s:>10,.0f} frames/s\n"
        f"  receive + normalise      {result.adapter_per_s:>10,.0f} frames/s  (ratio {result.ratio:.2f},"
        f" {result.trades:,} trades)"
    )


@app.command(
    "matching",
    help="The matching engine alone, in process: orders/s and per-order latency on a seeded order stream.\n\n"
    "Generates a seeded stream (about 60% limit orders near a drifting mid, 20% market orders, 20% cancels"
    " of live orders, over several funded users and every default market), then applies it to fresh"
    " engines: back to back for throughput (best of 3 runs) and one command at a time for latency."
    " Nothing is started and nothing is touched.",
)
def matching(
    orders: Annotated[
        int | None,
        typer.Option("--orders", min=1, max=10_000_000, help="Commands in the stream.", show_default="200000"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the order stream.")] = 4,
    users: Annotated[int, typer.Option("--users", min=1, max=10_000, help="Funded users placing orders.")] = 8,
    quick: Annotated[bool, _quick("20,000 orders, one throughput run")] = False,
    peers: Annotated[
        bool,
        typer.Option(
            "--peers",
            help="Also time liquibook and lightmatchingengine (when importable: pip install 'stockctl[peers]')"
            " and our other build on one stream of limit orders and cancels, after checking their fills are ours.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """The matching engine alone, in process: orders/s and per-order latency on a seeded order stream."""
    from stockctl.bench.matching import DEFAULT_ORDERS, QUICK_ORDERS, run_matching_bench

    count = orders if orders is not None else QUICK_ORDERS if quick else DEFAULT_ORDERS
    rounds = 1 if quick else 3
    _run(
        "matching",
        lambda progress: run_matching_bench(count, seed, users, rounds, progress, peers),
        render_matching,
        json_out,
    )


@app.command(
    "orders",
    help="Orders end to end: submission -> the reply that acknowledges them (events stored), beside raw JetStream.\n\n"
    "Starts a private nats-server, valkey-server and the matching daemon in a temporary directory"
    " (a running instance is not touched), funds a few bench users, then submits a mix of passive and"
    " crossing limit orders and cancels the way the gateway does (JetStream ex.order.<MKT> with a reply"
    " inbox) at increasing offered rates, timing each from submission to its reply. --via-gateway"
    " goes through POST /api/v1/orders instead (auth and gateway daemons too). The baseline is the raw"
    " JetStream publish rate on the same server. Every process it starts is stopped.\n\n"
    "--cluster: the same on a private `up --cluster` cluster, the matching daemon leading and its"
    " standby beside it, beside the raw JetStream publish rate on an R3 stream of that cluster, in one"
    " run (--via-gateway is not measured there).",
)
def orders(
    rates: Annotated[
        str | None,
        typer.Option(
            "--rates",
            help="Offered rates to step through, orders/s, comma separated (500,1k,2k).",
            show_default="500,1000,2000,5000,10000,17000; with --cluster 500,1000,1500,2000,3000,4000,5000,7000,10000",
        ),
    ] = None,
    seconds: StepSecondsOpt = None,
    users: Annotated[
        int | None,
        typer.Option("--users", min=2, max=1000, help="Bench users placing orders.", show_default="8; 4 via gateway"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the order flow.")] = 7,
    via_gateway: Annotated[
        bool, typer.Option("--via-gateway", help="Submit through the gateway's HTTP API instead of NATS.")
    ] = False,
    connections: Annotated[
        int,
        typer.Option("--connections", min=1, max=1000, help="Keep-alive HTTP connections (with --via-gateway)."),
    ] = 32,
    baseline_messages: Annotated[int | None, _baseline_messages("JetStream", 50_000)] = None,
    quick: Annotated[bool, _quick("200 and 500 orders/s, 2 s each")] = False,
    cluster: ClusterOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Orders end to end: submission -> acknowledging reply, beside raw JetStream."""
    from stockctl.bench.orders import GATEWAY_USERS, OrdersBenchOptions, parse_order_rates, run_orders_bench

    opts = OrdersBenchOptions.quick() if quick else OrdersBenchOptions()
    if cluster and not quick:
        from stockctl.bench.orders_cluster import CLUSTER_RATES

        opts.rates = list(CLUSTER_RATES)
    _given(
        opts,
        rates=parse_order_rates(rates) if rates is not None else None,
        seconds=seconds,
        users=users if users is not None else GATEWAY_USERS if via_gateway else None,
        baseline_messages=baseline_messages,
        seed=seed,
        via_gateway=via_gateway,
        connections=connections,
    )
    if cluster:
        from stockctl.bench.orders_cluster import run_orders_cluster_bench

        _run("orders", lambda progress: run_orders_cluster_bench(opts, progress), render_orders_cluster, json_out)
        return
    _run("orders", lambda progress: run_orders_bench(opts, progress), render_orders, json_out)


def render_orders(r: OrdersBenchResult) -> None:
    """The steps table, where the CPU went, the baseline, and a verdict against the target."""
    from stockctl.bench.kit import (
        best_of,
        cpu_table,
        fmt_ms,
        fmt_num,
        latency_verdicts,
        not_run_note,
        pass_fail,
    )
    from stockctl.bench.orders import KEEP_UP_FRACTION, TARGET_RATIO, orders_steps_table

    path = "gateway HTTP" if r.via == "gateway" else "NATS (the gateway's path)"
    title = f"bench orders via {path}: {r.users} users, {', '.join(r.markets)}, {r.seconds:g}s per rate"
    console.print(orders_steps_table(title, r.steps))

    keys = ["matching", "gateway", "auth", "nats", "valkey", "bench", "other"]
    keys = [k for k in keys if any(k in s.cpu for s in r.steps)]
    if keys:
        waited = [k for k in ("matching", "gateway") if any(k in s.cpu_wait for s in r.steps)]
        cpu = cpu_table(
            ["offered/s", *("nats-server" if k == "nats" else k for k in keys), *(f"{k} waited" for k in waited)]
        )
        for s in r.steps:
            cpu.add_row(
                fmt_num(s.offered_per_s),
                *(fmt_num(s.cpu.get(k), ".2f") for k in keys),
                *(fmt_num(s.cpu_wait.get(k), ".2f") for k in waited),
            )
        console.print(cpu)
        if waited:
            console.print(
                "[dim]waited: cores' worth of time the daemon was runnable but had no CPU"
                " (the rest of the machine, this benchmark included, had them)[/]"
            )
    if r.skipped_rates:
        console.print(not_run_note(r.skipped_rates, "orders"))

    b = r.baseline
    console.print(
        f"sustained            [bold]{r.sustained:,.0f}[/] orders/s acknowledged (max {r.max_delivered:,.0f};"
        f" kept up = sent and acked >= {KEEP_UP_FRACTION:.0%} of offered, all answered)"
    )
    console.print(
        f"raw JetStream        [bold]{b.msgs_per_s:,.0f}[/] msgs/s"
        f" ({best_of(b.rounds)}{b.messages:,} x {b.payload_bytes} B"
        f" publish_async, acks awaited, same server, same run); one publish round trip"
        f" p50 {fmt_ms(b.rtt_p50_ms)} / p99 {fmt_ms(b.rtt_p99_ms)} ms"
    )
    console.print(f"ratio                [bold]{r.ratio:.3f}[/]")
    load = r.load_avg
    if load is not None:
        console.print(f"machine              {r.cpus} CPUs, load average {load:.2f} at the end")
    t = r.targets()
    console.print(
        f"verdict: sustained >= {TARGET_RATIO:g} x raw {pass_fail(t['ratio_met'])} ({r.ratio:.3f});"
        f" {latency_verdicts(t['latency'], 'orders/s')} [dim]in {r.elapsed_s:.0f}s[/]"
    )


@app.command(
    "tui",
    help="The trading terminal under a fast quote feed, headless: input lag, frames/s, redraws/s per widget.\n\n"
    "Runs the real app under Textual's headless driver with a synthetic source that hands it gateway quote"
    " frames at --rate quotes/s over --symbols symbols for --seconds, presses a key every 100-200 ms and"
    " times it until a frame shows its effect. No server is started and no network is used.",
)
def tui(
    rate: Annotated[float, typer.Option("--rate", min=1, max=1_000_000, help="Quotes offered per second.")] = 1000,
    seconds: Annotated[
        float | None, typer.Option("--seconds", min=0.5, max=3600, help="Seconds measured.", show_default="30")
    ] = None,
    symbols: Annotated[int, typer.Option("--symbols", min=1, max=500, help="Symbols the quotes rotate over.")] = 10,
    quick: Annotated[bool, _quick("3 s")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The trading terminal under a fast quote feed, headless: input lag, frames/s, redraws/s per widget."""
    from tui.bench import DEFAULT_SECONDS, QUICK_SECONDS, TuiBenchOptions, render, run_tui_bench

    length = seconds if seconds is not None else QUICK_SECONDS if quick else DEFAULT_SECONDS
    opts = TuiBenchOptions(rate=rate, seconds=length, symbols=symbols)
    _run("tui", lambda progress: run_tui_bench(opts, progress), lambda result: render(result, console), json_out)


@app.command(
    "history",
    help="The history store: N ticks written (batches, one transaction each) and read back, beside a raw"
    " executemany baseline of the same rows.\n\n"
    "SQLite in a temporary directory always; PostgreSQL too with --url (in a scratch schema that is"
    " dropped afterwards). A running instance is not touched.",
)
def history(
    ticks: Annotated[
        int | None, typer.Option("--ticks", min=1000, max=10_000_000, help="Ticks to write.", show_default="1000000")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=100_000, help="Ticks per transaction.")] = 5000,
    url: Annotated[
        str | None, typer.Option("--url", help="Also bench this PostgreSQL (postgresql://...).", envvar=None)
    ] = None,
    quick: Annotated[bool, _quick("50,000 ticks")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The history store: N ticks written and read back, beside a raw executemany baseline."""
    from stockctl.bench.history import DEFAULT_TICKS, QUICK_TICKS, run_history_bench

    count = ticks if ticks is not None else QUICK_TICKS if quick else DEFAULT_TICKS
    _run("history", lambda progress: run_history_bench(count, batch, url, progress), render_history, json_out)


@app.command(
    "up",
    help="Seconds from `stockctl up` to every component ready, and where they went, over N fresh starts.\n\n"
    "Each run starts a fresh instance (`stockctl up`) in a temporary home on free ports, with no config"
    " file (a running instance is not touched), reads when each server and daemon was started, finished"
    " its imports and became ready, and the CPU each used, then stops it with `stockctl down`.",
)
def up(
    runs: Annotated[
        int | None, typer.Option("--runs", min=1, max=100, help="Fresh starts measured.", show_default="5")
    ] = None,
    quick: Annotated[bool, _quick("1 start")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Seconds from `stockctl up` to every component ready, and where they went, over N fresh starts."""
    from stockctl.bench.start import DEFAULT_RUNS, QUICK_RUNS, run_up_bench

    count = runs if runs is not None else QUICK_RUNS if quick else DEFAULT_RUNS
    _run("up", lambda progress: run_up_bench(count, progress), render_up, json_out)
