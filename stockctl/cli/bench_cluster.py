"""The tables of ``stockctl bench ticks --cluster`` and ``bench orders --cluster``: each configuration
a row beside the raw baselines of the same cluster, its steps, and the CPU of every process
(each node, each daemon) at the configuration's sustained step. The commands are in :mod:`.bench`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stockctl.cli.common import console

if TYPE_CHECKING:
    from rich.table import Table

    from stockctl.bench.orders_cluster import ClusterOrdersResult
    from stockctl.bench.ticks_cluster import ClusterTicksResult


def _cluster_title(bench: str, cluster: dict[str, Any]) -> str:
    return (
        f"bench {bench} --cluster: {cluster['nats_nodes']} nats-server nodes (streams R{cluster['stream_replicas']}),"
        f" Valkey Cluster {cluster['valkey_primaries']}+{cluster['valkey_nodes'] - cluster['valkey_primaries']}"
    )


def _first_column_table(title: str, first: str, columns: Sequence[str] = ()) -> Table:
    """A table of right-aligned figures after a left-aligned first column."""
    from stockctl.bench.kit import table

    t = table(title)
    t.add_column(first)
    for col in columns:
        t.add_column(col, justify="right")
    return t


def _cpu_by_process(phases: Sequence[tuple[str, dict[str, float], Any]]) -> None:
    """One row per process; for each configuration (name, idle CPU, sustained step) a column idle
    and one at its sustained step."""
    from stockctl.bench.kit import fmt_num

    columns: list[tuple[str, dict[str, float]]] = []
    for name, idle, at in phases:
        columns.append((f"{name}, idle", idle))
        if at is not None:
            columns.append((f"{name} @ {at.offered_per_s:,.0f}/s", at.cpu))

    names: list[str] = []
    for _, cpu in columns:
        names += [n for n in cpu if n not in names and n != "other"]
    rank = {"nats": 1, "redis": 2, "bench": 3}
    names.sort(key=lambda n: rank.get(n.split("-")[0], 0))  # the daemons, the nodes, this process
    names.append("other")
    table = _first_column_table(
        "CPU cores used per process: idle (nothing offered) and at each configuration's sustained step", "process"
    )
    for title, _ in columns:
        table.add_column(title, justify="right")
    for name in names:
        label = "other (rest of the machine)" if name == "other" else name
        table.add_row(label, *(fmt_num(cpu.get(name), ".2f") for _, cpu in columns))
    ours = [sum(v for k, v in cpu.items() if k != "other") for _, cpu in columns]
    table.add_row("[bold]the bench's processes[/]", *(f"[bold]{fmt_num(v, '.2f')}[/]" for v in ours))
    console.print(table)


def _load_line(machine: dict[str, Any], elapsed_s: float) -> None:
    console.print(
        f"machine              {machine.get('cpus')} CPUs; load average {machine.get('loadavg_1m_start')} at the start,"
        f" {machine.get('loadavg_1m_end')} at the end [dim]in {elapsed_s:.0f}s[/]"
    )


def render_ticks_cluster(r: ClusterTicksResult) -> None:
    """Each processor count beside the raw baselines, its steps, and the CPU of every process."""
    from stockctl.bench.cluster import sustained_step
    from stockctl.bench.kit import fmt_ms, fmt_num, kept_up_cell, not_run_note, steps_table

    js = r.js_baseline.msgs_per_s
    head = _first_column_table(
        f"{_cluster_title('ticks', r.cluster)}, {len(r.symbols)} symbols, {r.seconds:g}s per rate",
        "configuration",
        ("ticks/s", "p50 ms", "p99 ms", "at ticks/s", "x raw NATS", "x raw JetStream"),
    )
    for p in r.phases:
        lat = p.ladder.latency_step
        head.add_row(
            p.name,
            f"[bold]{p.ladder.sustained:,.0f}[/]",
            fmt_ms(lat.p50_ms if lat else None),
            fmt_ms(lat.p99_ms if lat else None),
            fmt_num(lat.offered_per_s if lat else None),
            f"{p.ladder.ratio:.3f}",
            f"{p.ladder.sustained / js:.3f}" if js else "-",
        )
    b = r.baseline
    head.add_row("raw nats-py core pub -> sub", f"{b.msgs_per_s:,.0f}", "", "", "", "", "")
    head.add_row(f"raw JetStream R{r.cluster['stream_replicas']} publish_async", f"{js:,.0f}", "", "", "", "", "")
    console.print(head)

    for p in r.phases:
        table = steps_table(
            f"{p.name}: {'; '.join(f'{n} partitions {ps}' for n, ps in p.partitions.items())}",
            ("offered/s", "sent/s", "quotes/s", "p50 ms", "p99 ms", "max ms", "ticks per processor"),
        )
        for s in p.ladder.steps:
            table.add_row(
                fmt_num(s.offered_per_s) + ("[dim]*[/]" if s.probe else ""),
                fmt_num(s.published_per_s),
                fmt_num(s.delivered_per_s),
                fmt_ms(s.p50_ms),
                fmt_ms(s.p99_ms),
                fmt_ms(s.max_ms),
                " / ".join(f"{n:,}" for n in s.processor_ticks.values()),
                kept_up_cell(s.kept_up, s.drained, s.driver_limited),
            )
        console.print(table)
        if p.ladder.skipped_rates:
            console.print(not_run_note(p.ladder.skipped_rates, "ticks"))
    _cpu_by_process([(p.name, p.idle, sustained_step(p.ladder)) for p in r.phases])
    if any(s.probe for p in r.phases for s in p.ladder.steps):
        console.print("[dim]* probe: a rate just below what the first saturated rate delivered[/]")
    scaling = f"{r.scaling:.2f}x" if r.scaling is not None else "-"
    console.print(
        f"scaling              [bold]{scaling}[/] sustained with {r.phases[-1].name} over {r.phases[0].name}"
        f" (kept up = quotes >= 95% of offered and backlog drained)"
    )
    console.print(
        f"raw baselines        core NATS {b.messages:,} x {b.payload_bytes} B; JetStream {r.js_baseline.messages:,}"
        f" x {r.js_baseline.payload_bytes} B, acks awaited; same cluster, same run"
    )
    _load_line(r.to_doc()["machine"], r.elapsed_s)


def render_orders_cluster(r: ClusterOrdersResult) -> None:
    """Each matching configuration beside raw JetStream, its steps, and the CPU of every process."""
    from stockctl.bench.cluster import sustained_step
    from stockctl.bench.kit import fmt_ms, fmt_num, not_run_note
    from stockctl.bench.orders import orders_steps_table

    b = r.baseline
    head = _first_column_table(
        f"{_cluster_title('orders', r.cluster)}, {r.users} users, {', '.join(r.markets)}, {r.seconds:g}s per rate",
        "configuration",
        ("orders/s", "p50 ms", "p99 ms", "at orders/s", "x raw JetStream"),
    )
    for p in r.phases:
        lat = p.ladder.latency_step
        active = ", ".join(n for n, role in p.roles.items() if role == "active")
        head.add_row(
            f"{p.name} ({active} active)",
            f"[bold]{p.ladder.sustained:,.0f}[/]",
            fmt_ms(lat.p50_ms if lat else None),
            fmt_ms(lat.p99_ms if lat else None),
            fmt_num(lat.offered_per_s if lat else None),
            f"{p.ladder.ratio:.3f}",
        )
    head.add_row(
        f"raw JetStream R{r.cluster['stream_replicas']} publish_async",
        f"{b.msgs_per_s:,.0f}",
        fmt_ms(b.rtt_p50_ms),
        fmt_ms(b.rtt_p99_ms),
        "1 at a time",
        "",
    )
    console.print(head)
    for p in r.phases:
        roles = ", ".join(f"{n} {role}" for n, role in p.roles.items())
        console.print(orders_steps_table(f"{p.name}: {roles}", p.ladder.steps))
        if p.ladder.skipped_rates:
            console.print(not_run_note(p.ladder.skipped_rates, "orders"))
    _cpu_by_process([(p.name, p.idle, sustained_step(p.ladder)) for p in r.phases])
    console.print(
        f"raw JetStream        {b.messages:,} x {b.payload_bytes} B publish_async to an R{r.cluster['stream_replicas']}"
        " stream, acks awaited, and one publish round trip (p50/p99 above); same cluster, same run"
    )
    _load_line(r.to_doc()["machine"], r.elapsed_s)
