"""The tables of ``stockctl bench matching``, ``bench history`` and ``bench up``: each result
printed as figures beside their baselines and a verdict. The commands are in :mod:`.bench`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stockctl.cli.common import console

if TYPE_CHECKING:
    from stockctl.bench.matching import MatchingBenchResult


def render_matching(r: MatchingBenchResult) -> None:
    """Throughput, latency, what the stream did, and a verdict against the target."""
    from stockctl.bench.kit import measure_table, pass_fail
    from stockctl.bench.matching import TARGET_ORDERS_PER_S

    table = measure_table(
        f"bench matching: {r.orders:,} commands, seed {r.seed}, {r.users} users, {', '.join(r.markets)}"
    )
    table.add_row("engine build", r.engine, r.engine_note)
    table.add_row("orders/s", f"[bold]{r.orders_per_s:,.0f}[/]", f"wall clock, best run ({r.seconds:.2f} s)")
    table.add_row("orders/s (CPU time)", f"{r.cpu_orders_per_s:,.0f}", "this process's CPU time, best run")
    table.add_row("latency p50", f"{r.p50_us:.2f} µs", "one apply(), events included")
    table.add_row("latency p99", f"{r.p99_us:.2f} µs", "")
    table.add_row("latency max / mean", f"{r.max_us:,.0f} / {r.mean_us:.2f} µs", "")
    table.add_row(
        "events / trades", f"{r.events:,} / {r.trades:,}", f"{r.final_book_orders:,} orders left on the books"
    )
    console.print(table)
    mix = r.mix
    console.print(
        f"stream: {mix.get('limit', 0):,} limit ({mix.get('ioc', 0):,} ioc, {mix.get('fok', 0):,} fok,"
        f" {mix.get('post_only', 0):,} post-only), {mix.get('market', 0):,} market, {mix.get('cancel', 0):,} cancels;"
        f" outcome: {mix.get('accepted', 0):,} accepted, {mix.get('rejected', 0):,} rejected,"
        f" {mix.get('cancelled', 0):,} cancelled"
    )
    x = r.extended
    if x:
        xm = x["mix"]
        console.print(
            f"extended mix (reported apart): [bold]{x['orders_per_s']:,.0f}[/] orders/s"
            f" ({x['cpu_orders_per_s']:,.0f} CPU), p50 {x['p50_us']:.2f} µs, p99 {x['p99_us']:.2f} µs;"
            f" {xm.get('stop', 0):,} stop, {xm.get('stop_limit', 0):,} stop-limit, {xm.get('amend', 0):,} amends,"
            f" {xm.get('gtd', 0):,} gtd, {xm.get('iceberg', 0):,} icebergs, {xm.get('time', 0):,} time commands;"
            f" {x['trades']:,} trades"
        )
    if r.peers:
        render_peers(r.peers)
    gc_note = "" if r.gc_enabled else ", gc off"
    console.print(
        f"verdict: >= {TARGET_ORDERS_PER_S:,} orders/s {pass_fail(r.target_met)} ({r.orders_per_s:,.0f}{gc_note})"
        f" [dim]in {r.elapsed_s:.0f}s[/]"
    )


def render_peers(doc: dict[str, Any]) -> None:
    """Each engine's orders/s on the peer stream, whether its fills are ours, and the liquibook verdict."""
    from stockctl.bench.kit import measure_table, pass_fail

    table = measure_table(f"peers: {doc['orders']:,} limit orders and cancels, seed {doc['seed']}, {doc['market']}")
    for run in doc["runs"]:
        name = f"{run['name']} ({run['build']})"
        if not run["importable"] or not run["orders_per_s"]:
            table.add_row(name, "-", run["note"])
            continue
        per_cpu = f"{run['cpu_orders_per_s']:,.0f} per CPU second"
        table.add_row(name, f"{run['orders_per_s']:,.0f}", f"{per_cpu}; {run['note']}")
    console.print(table)
    ratio = doc["vs_liquibook"]
    if ratio is None:
        console.print("verdict vs liquibook: not measured (liquibook or the compiled build did not run)")
    else:
        console.print(
            f"verdict: >= {doc['target_vs_liquibook']}x liquibook's orders/s {pass_fail(doc['target_met'])}"
            f" (compiled stockctl is {ratio:.2f}x liquibook, per CPU second)"
        )


def render_history(r: Any) -> None:
    """One table per backend: write, duplicate rewrite and read rates beside the raw baseline."""
    from stockctl.bench.kit import measure_table

    for b in r.backends:
        table = measure_table(f"bench history: {b.backend} ({b.where}), {b.ticks:,} ticks, {b.batch:,} per transaction")
        table.add_row("raw executemany", f"{b.raw_write_per_s:,.0f} ticks/s", "bare INSERT, same key, no candles")
        table.add_row(
            "store write",
            f"[bold]{b.write_per_s:,.0f} ticks/s[/]",
            f"{b.write_ratio:.2f} of raw; ticks + 1s/1m/1h candles",
        )
        table.add_row("store rewrite", f"{b.rewrite_per_s:,.0f} ticks/s", "the same batches again: all duplicates")
        table.add_row("read back", f"[bold]{b.read_per_s:,.0f} ticks/s[/]", f"{b.read_back:,} ticks in pages of 10,000")
        table.add_row(
            "1m candles", f"{b.candles_1m:,}", f"read in {b.candles_1m_read_s * 1000:.1f} ms (stored, not computed)"
        )
        console.print(table)
    console.print(f"[dim]in {r.elapsed_s:.0f}s[/]")


def render_up(r: Any) -> None:
    """One row per run (the phases), a median row per component, and the verdict."""
    from stockctl.bench.kit import figures_table, pass_fail
    from stockctl.bench.start import TARGET_S

    runs = figures_table(
        f"bench up: {len(r.runs)} fresh starts (seconds from the command)",
        ("run", "load", "supervisor", "servers", "last import", "slowest startup", "ready", "command", "CPU s"),
    )
    for i, run in enumerate(r.runs, 1):
        imp, startup = run.slowest("main_s"), run.slowest("startup_s")
        runs.add_row(
            str(i),
            f"{run.load_before:.2f}",
            f"{run.supervisor_s:.2f}",
            "-" if run.servers_ready_s is None else f"{run.servers_ready_s:.2f}",
            f"{imp[1]:.2f} {imp[0]}",
            f"{startup[1]:.2f} {startup[0]}",
            f"{run.ready_s:.2f}",
            f"{run.command_s:.2f}",
            f"{run.cpu_s:.2f}",
        )
    console.print(runs)
    parts = figures_table(
        "per component, median of the runs", ("component", "started", "import", "startup", "ready", "CPU s")
    )
    names = [p.name for p in r.runs[0].parts]

    def med(name: str, what: str) -> str:
        values = [getattr(p, what) for run in r.runs for p in run.parts if p.name == name]
        values = [v for v in values if v is not None]
        return f"{sorted(values)[len(values) // 2]:.2f}" if values else "-"

    for name in names:
        parts.add_row(name, *(med(name, w) for w in ("started_s", "import_s", "startup_s", "ready_s", "cpu_s")))
    console.print(parts)
    ready, command = r.ready, r.command
    console.print(
        f"ready    median [bold]{ready['median']:.2f}[/] s, p90 {ready['p90']:.2f}, best {ready['best']:.2f}"
        f"  (command returned: median {command['median']:.2f}, best {command['best']:.2f})"
    )
    console.print(
        f"verdict: ready < {TARGET_S:g} s {pass_fail(r.targets()['ready_met'])} ({ready['median']:.2f} s median)"
        f" [dim]in {r.elapsed_s:.0f}s[/]"
    )
