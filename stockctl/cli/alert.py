"""``alert add``, ``alert list``, ``alert rm``, ``alert watch``: price alerts, kept by the server.

The alerts daemon evaluates them as ticks arrive, so they fire while this terminal is
closed too; ``alert list --all`` shows what fired, ``alert watch`` streams it live.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Annotated

import typer

from stockctl.cli.common import JsonOpt, console, emit_line, fmt_time, get_settings, print_json
from stockctl.cli.complete import complete_symbols
from stockctl.cli.tables import Col, FormatOpt, Report, emit
from stockctl.errors import UsageError

if TYPE_CHECKING:
    from stockctl.alerts.rules import Alert

app = typer.Typer(
    no_args_is_help=True,
    help="Price alerts: above/below a price, or on the next SMA crossover. Kept and evaluated by the server.",
)


@app.command("add")
def add(
    symbol: Annotated[
        str,
        typer.Argument(
            help="Symbol, e.g. AAPL (or an exchange market such as TATA_INR; TAB completes).",
            autocompletion=complete_symbols,
        ),
    ],
    condition: Annotated[str, typer.Argument(help="above, below or cross-sma.", show_default=False)],
    price: Annotated[str | None, typer.Argument(help="Price for above/below, e.g. 200.5.", show_default=False)] = None,
    side: Annotated[
        str | None,
        typer.Option(
            help="cross-sma only: buy or sell, to fire on that crossover only (default: either).", metavar="SIDE"
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Set an alert: `AAPL above 200`, `AAPL below 150.25`, `AAPL cross-sma --side buy`."""
    from stockctl.alerts.rules import AlertIn, describe, parse_request
    from stockctl.client.api import GatewayClient

    # The same checks the gateway makes, so a typo is caught before any network.
    spec = parse_request(AlertIn(symbol, condition, price, side))
    with GatewayClient(get_settings()) as gw:
        added = gw.add_alert(spec.symbol, spec.condition, spec.threshold, spec.side)
    if json_out:
        print_json(added)
        return
    a = added.alert
    console.print(f"alert [bold]{a.id}[/] set: {describe(a)} (last {added.last_price})")
    if added.note:
        console.print(f"[yellow]note:[/] {added.note}")


def _condition(a: Alert) -> str:
    if a.condition == "cross-sma":
        return "cross-sma" + (f" {a.side}" if a.side else "")
    return f"{a.condition} {a.threshold}"


COLS = [
    Col("id"),
    Col("symbol", "left"),
    Col("condition", "left"),
    Col("status", "left"),
    Col("set", priority=2),
    Col("fired", priority=1),
    Col("price"),
]


ALERT_FIELDS = (
    "id",
    "symbol",
    "condition",
    "threshold",
    "side",
    "status",
    "created",
    "fired_ts",
    "fired_price",
    "signal",
)


def _row(a: Alert) -> list[str]:
    status = "[cyan]active[/]" if a.status == "active" else "[yellow]fired[/]"
    price = (a.fired_price or "") + (f" ({a.signal})" if a.signal else "")
    return [str(a.id), a.symbol, _condition(a), status, fmt_time(a.created), fmt_time(a.fired_ts), price or "-"]


@app.command("list")
def list_(
    show_all: Annotated[bool, typer.Option("--all", help="Also the alerts that fired (the most recent 100).")] = False,
    json_out: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Your active alerts (--all: also the ones that fired)."""
    from stockctl.client.api import GatewayClient

    with GatewayClient(get_settings()) as gw:
        listing = gw.alerts()
    rows = listing.active + (listing.fired if show_all else [])
    report = Report(
        listing if show_all else listing.active,
        ALERT_FIELDS,
        ([getattr(a, f) for f in ALERT_FIELDS] for a in rows),
        COLS,
        [_row(a) for a in rows],
        empty="no alerts" if show_all else "no active alerts; add one with `stockctl alert add AAPL above 200`",
    )
    emit(report, fmt, json_out)


@app.command("rm")
def rm(
    alert_id: Annotated[str, typer.Argument(help="Alert id (see `stockctl alert list`).", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """Remove one of your active alerts."""
    from stockctl.alerts.rules import describe
    from stockctl.client.api import GatewayClient

    if not alert_id.isascii() or not alert_id.isdigit():
        raise UsageError(f"bad alert id {alert_id[:20]!r}", "ids are whole numbers: see `stockctl alert list`")
    with GatewayClient(get_settings()) as gw:
        removed = gw.remove_alert(int(alert_id))
    if json_out:
        print_json(removed)
        return
    console.print(f"alert {removed.id} removed: {describe(removed)}")


@app.command("watch")
def watch(
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many fired alerts.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print each fired alert as one JSON line.")] = False,
) -> None:
    """Stream your alerts as they fire (reconnects by itself)."""
    import msgspec

    from stockctl.alerts.rules import alert_decoder, describe

    settings = get_settings()

    async def follow() -> None:
        from stockctl.sdk.stream import stream  # the SDK's socket loop: renews, reconnects, fails over

        seen = 0
        async for kind, _channel, data in stream(settings, ["alerts"]):
            if kind != "alert":
                continue  # the snapshot lists what is set; `alert list` shows it
            a = alert_decoder.decode(data)
            if json_out:
                if not emit_line(json.dumps(msgspec.to_builtins(a))):
                    return
            else:
                signal = f" on a {a.signal} crossover" if a.signal else ""
                console.print(
                    f"{fmt_time(a.fired_ts)}  alert [bold]{a.id}[/] fired: {describe(a)} at {a.fired_price}{signal}"
                )
            seen += 1
            if count is not None and seen >= count:
                return

    import asyncio  # here: importing it costs every command's start-up

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())
