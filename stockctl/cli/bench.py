"""``stockctl bench ...``: performance measured on this machine, never hoped for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from stockctl.cli.common import JsonOpt, console, err_console, print_json

if TYPE_CHECKING:
    from stockctl.bench import BenchResult

app = typer.Typer(no_args_is_help=True)


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _ok(flag: bool) -> str:
    return "[bold green]PASS[/]" if flag else "[bold red]FAIL[/]"


@app.command(
    "ticks",
    help="Publisher -> processor throughput and latency, beside the raw NATS baseline.\n\n"
    "Starts a private nats-server, valkey-server and processor daemon in a temporary directory"
    " (a running instance is not touched), offers ticks at increasing rates and times each tick"
    " from its timestamp to its quote. Every process it starts is stopped.",
)
def ticks(
    rates: Annotated[
        str | None,
        typer.Option(
            "--rates",
            help="Offered total rates to step through, ticks/s, comma separated (1000,5k,20k).",
            show_default="1000,5000,20000,50000",
        ),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option("--seconds", min=0.5, max=600, help="Seconds each rate is held.", show_default="5"),
    ] = None,
    symbols: Annotated[int, typer.Option("--symbols", min=1, max=1000, help="Symbols the ticks rotate over.")] = 5,
    baseline_messages: Annotated[
        int | None,
        typer.Option("--baseline-messages", min=1000, help="Messages of the raw NATS baseline.", show_default="200000"),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option("--probe/--no-probe", help="Once a rate falls behind, try rates just below what it delivered."),
    ] = True,
    quick: Annotated[
        bool, typer.Option("--quick", help="A short run (500 and 2,000 ticks/s, 2 s each) for smoke tests.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Publisher -> processor throughput and latency, beside the raw NATS baseline."""
    from stockctl.bench import BenchOptions, parse_rates, run_ticks_bench

    opts = BenchOptions.quick() if quick else BenchOptions()
    if rates is not None:
        opts.rates = parse_rates(rates)
    if seconds is not None:
        opts.seconds = seconds
    if baseline_messages is not None:
        opts.baseline_messages = baseline_messages
    opts.symbols = symbols
    opts.probe = probe and not quick

    with err_console.status("benchmarking...", spinner="dots") as status:
        result = run_ticks_bench(opts, progress=lambda text: status.update(f"bench ticks: {text}"))

    if json_out:
        print_json(result.to_doc())
        return
    render(result)


def render(result: BenchResult) -> None:
    """The steps table, where the CPU went, the baseline, and a verdict against the targets."""
    from stockctl.bench import KEEP_UP_FRACTION, TARGET_P99_MS, TARGET_RATIO

    table = Table(
        title=f"bench ticks: {len(result.symbols)} symbols, {result.seconds:g}s per rate",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col in ("offered/s", "sent/s", "quotes/s", "p50 ms", "p99 ms", "max ms", "drain s"):
        table.add_column(col, justify="right")
    table.add_column("kept up")
    for s in result.steps:
        if s.kept_up:
            verdict = "[green]yes[/]"
        elif not s.drained:
            verdict = "[red]no, stuck[/]"
        elif s.driver_limited:
            verdict = "[red]no, driver[/]"
        else:
            verdict = "[red]no[/]"
        table.add_row(
            _num(s.offered_per_s) + ("[dim]*[/]" if s.probe else ""),
            _num(s.published_per_s),
            _num(s.delivered_per_s),
            _ms(s.p50_ms),
            _ms(s.p99_ms),
            _ms(s.max_ms),
            f"{s.drain_s:.2f}",
            verdict,
        )
    console.print(table)

    cpu = Table(title="CPU cores used per rate", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("offered/s", "ticks/batch", "processor", "nats-server", "valkey", "bench", "other"):
        cpu.add_column(col, justify="right")
    for s in result.steps:
        cpu.add_row(
            _num(s.offered_per_s) + ("[dim]*[/]" if s.probe else ""),
            _num(s.avg_batch, ",.1f"),
            *(_num(s.cpu.get(k), ".2f") for k in ("processor", "nats", "valkey", "bench", "other")),
        )
    console.print(cpu)
    if any(s.probe for s in result.steps):
        console.print("[dim]* probe: a rate just below what the first saturated rate delivered[/]")
    if result.skipped_rates:
        skipped = ", ".join(f"{r:,}" for r in result.skipped_rates)
        console.print(f"[dim]not run: {skipped} ticks/s (a lower rate already fell behind)[/]")

    b = result.baseline
    console.print(
        f"sustained pipeline   [bold]{result.sustained:,.0f}[/] ticks/s (max delivered {result.max_delivered:,.0f};"
        f" kept up = quotes >= {KEEP_UP_FRACTION:.0%} of offered and backlog drained)"
    )
    rounds = f"best of {', '.join(f'{r:,.0f}' for r in b.rounds)}; " if len(b.rounds) > 1 else ""
    lost = f"; [red]{b.lost:,} lost[/]" if b.lost else ""
    console.print(
        f"raw nats-py baseline [bold]{b.msgs_per_s:,.0f}[/] msgs/s ({rounds}{b.messages:,} x {b.payload_bytes} B"
        f" core publish -> subscribe, same server, same run{lost})"
    )
    console.print(f"ratio                [bold]{result.ratio:.3f}[/]")
    targets = result.targets()
    lat = result.latency_step
    at = f"{lat.offered_per_s:,.0f}" if lat else "-"
    p99 = f"{lat.p99_ms:.2f} ms" if lat and lat.p99_ms is not None else "-"
    console.print(
        f"verdict: rate >= {TARGET_RATIO:g} x baseline {_ok(targets['ratio_met'])} ({result.ratio:.3f});"
        f" p99 < {TARGET_P99_MS:g} ms at {at} ticks/s {_ok(targets['p99_met'])} ({p99})"
        f" [dim]in {result.elapsed_s:.0f}s[/]"
    )
