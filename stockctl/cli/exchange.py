"""``order``, ``amend``, ``orders``, ``cancel``, ``fills``, ``balance``, ``book``, ``trades``: trading commands.

``order`` takes every order type the exchange does: limit (``QTY@PRICE``), market (``QTY``),
``--stop P`` (a stop: a market order once the last trade reaches P; a stop buy gives its price
cap as ``QTY@CAP``), ``--stop-limit P`` (a limit order at ``@PRICE`` once triggered),
``--gtd``/``--expire-at`` (good till that time: RFC 3339, epoch milliseconds or ``+30s``/``+5m``/``+2h``)
and ``--display-qty`` (an iceberg). The exchange checks the rest and says which rule failed.
The table commands print ``--format table|json|csv`` through ``stockctl.cli.tables.emit``;
the gateway client is imported inside the commands (start-up time).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stockctl.cli.common import JsonOpt, console, fmt_time, get_settings, print_json
from stockctl.cli.complete import complete_markets
from stockctl.cli.tables import Col, FormatOpt, Report, emit
from stockctl.errors import UsageError

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer()

MarketArg = Annotated[
    str,
    typer.Argument(help="Market, e.g. TATA_INR (TAB completes).", autocompletion=complete_markets, show_default=False),
]
MarketOpt = Annotated[str | None, typer.Option(help="Only this market.", autocompletion=complete_markets)]

FILLS_MAX = 1000
"""The most fills or trades one call shows (the gateway's bound)."""

BOOK_DEPTH_MAX = 100
"""The most book levels per side one call shows."""


class Side(StrEnum):
    buy = "buy"
    sell = "sell"


def parse_order_spec(text: str) -> tuple[str, str | None]:
    """``10@100.5`` -> ("10", "100.5") (limit); ``10`` -> ("10", None) (market).

    Only the shape is checked here (``validation.edge_decimal``); the exchange checks tick
    size, lot size, limits and funds and says which one failed.
    """
    from stockctl.exchange.validation import edge_decimal

    qty, sep, price = text.strip().partition("@")
    if not edge_decimal(qty):
        raise UsageError(f"bad quantity {qty!r}", "give a positive number, e.g. 10 or 10@100.5")
    if not sep:
        return qty, None
    if not edge_decimal(price):
        raise UsageError(f"bad price {price!r}", "give a positive decimal after @, e.g. 10@100.5")
    return qty, price


def parse_expiry(text: str) -> str | int:
    """``--expire-at`` as the gateway takes it (``validation.expiry_ms``, relative to now)."""
    from stockctl.exchange.validation import expiry_ms

    try:
        return expiry_ms(text, time.time_ns() // 1_000_000)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _events_summary(doc: dict[str, Any]) -> str:
    status = doc.get("status", "done")
    colour = {"filled": "green", "open": "cyan", "cancelled": "yellow", "pending": "blue"}.get(status, "magenta")
    return f"[{colour}]{status}[/]"


@app.command()
def order(
    side: Annotated[Side, typer.Argument(help="buy or sell.")],
    market: MarketArg,
    spec: Annotated[str, typer.Argument(help="QTY@PRICE for a limit order, QTY for a market order.")],
    ioc: Annotated[bool, typer.Option("--ioc", help="Immediate or cancel: fill what you can now.")] = False,
    fok: Annotated[bool, typer.Option("--fok", help="Fill or kill: all now or nothing.")] = False,
    post_only: Annotated[bool, typer.Option("--post-only", help="Only rest on the book; never take.")] = False,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="Your id for the order; a retry with it never doubles.")
    ] = None,
    stop: Annotated[
        str | None,
        typer.Option(
            "--stop", help="Stop price: a market order once the last trade reaches it (a stop buy caps at @PRICE)."
        ),
    ] = None,
    stop_limit: Annotated[
        str | None, typer.Option("--stop-limit", help="Stop price of a stop-limit: a limit order at @PRICE once hit.")
    ] = None,
    order_type: Annotated[
        str | None, typer.Option("--type", help="limit, market, stop or stop_limit (default: from the other options).")
    ] = None,
    expire_at: Annotated[
        str | None,
        typer.Option(
            "--gtd", "--expire-at", help="Good till: +30s, +5m, +2h, epoch ms or RFC 3339 (2030-01-02T15:04:05Z)."
        ),
    ] = None,
    display_qty: Annotated[
        str | None, typer.Option("--display-qty", help="Iceberg: show at most this much in the book.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Place an order: prints its id, its status and each fill."""
    from stockctl.client.api import GatewayClient, normalise_symbol
    from stockctl.exchange.validation import ORDER_TYPES

    qty, price = parse_order_spec(spec)
    if ioc and fok:
        raise UsageError("--ioc and --fok exclude each other")
    if stop and stop_limit:
        raise UsageError("--stop and --stop-limit exclude each other")
    if expire_at is not None and (ioc or fok):
        raise UsageError("--gtd is a time in force of its own: drop --ioc / --fok")
    if post_only and price is None:
        raise UsageError("--post-only needs a limit price", "use QTY@PRICE")
    if stop_limit and price is None:
        raise UsageError("--stop-limit needs its limit price", "use QTY@PRICE")
    kind = order_type or ("stop_limit" if stop_limit else "stop" if stop else "limit" if price else "market")
    if kind not in ORDER_TYPES:
        raise UsageError(f"bad --type {kind!r}", "limit, market, stop or stop_limit")
    body: dict[str, Any] = {
        "market": normalise_symbol(market),
        "side": side.value,
        "qty": qty,
        "price": price,
        "type": kind,
        "tif": "ioc" if ioc else "fok" if fok else "gtd" if expire_at is not None else "gtc",
        "post_only": post_only,
        # Always an id of our own: with one, the order may go on to another gateway when the first
        # does not answer, and the exchange still stores it once.
        "client_order_id": uuid.uuid4().hex if client_id is None else client_id,
    }
    if stop or stop_limit:
        body["stop_price"] = stop or stop_limit
    if expire_at is not None:
        body["expire_at"] = parse_expiry(expire_at)
    if display_qty is not None:
        body["display_qty"] = display_qty
    with GatewayClient(get_settings()) as gw:
        doc = gw.place(body)
    if json_out:
        print_json(doc)
        return
    what = f"{qty}@{price}" if price else f"{qty} at market"
    if "stop_price" in body:
        what += f" stop {body['stop_price']}"
    console.print(f"order [bold]{doc['order_id']}[/] {side.value} {body['market']} {what}: {_events_summary(doc)}")
    for fill in doc.get("filled", []):
        console.print(f"  filled {fill['qty']} @ {fill['price']} (fee {fill['fee']})")
    for ev in doc.get("events", []):
        if ev.get("event") == "cancelled":
            console.print(f"  [yellow]cancelled[/] remaining {ev['remaining']}: {ev['reason'].replace('_', ' ')}")


def _order_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for o in rows:
        side = f"[green]{o['side']}[/]" if o["side"] == "buy" else f"[red]{o['side']}[/]"
        out.append(
            [
                str(o["order_id"]),
                o["market"],
                side,
                o.get("type", "") + (f" @{o['stop_price']}" if o.get("stop_price") else ""),
                o.get("status", "open")
                + (f" (shows {o['visible']})" if o.get("visible") else "")
                + (" till " + fmt_time(o["expire_at"]) if o.get("expire_at") else ""),
                o.get("price") or "market",
                o["qty"],
                o.get("remaining", ""),
                fmt_time(o.get("ts")),
                o.get("client_order_id", ""),
            ]
        )
    return out


ORDER_COLS = [
    Col("id"),
    Col("market", "left"),
    Col("side", "left"),
    Col("type", "left", priority=3),
    Col("status", "left", priority=4),
    Col("price"),
    Col("qty"),
    Col("open qty"),
    Col("time", priority=1),
    Col("client id", "left", priority=2),
]


ORDER_FIELDS = (
    "order_id",
    "market",
    "side",
    "type",
    "status",
    "price",
    "qty",
    "remaining",
    "stop_price",
    "visible",
    "expire_at",
    "ts",
    "client_order_id",
)


@app.command()
def orders(
    market: MarketOpt = None,
    history: Annotated[
        bool, typer.Option("--all", help="Also finished orders (accepted, cancelled, rejected); not with csv.")
    ] = False,
    json_out: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Your open orders (``--all`` for history)."""
    from stockctl.cli.tables import Format, pick_format, records
    from stockctl.client.api import GatewayClient, normalise_symbol

    if history and pick_format(fmt, json_out) is Format.csv:
        raise UsageError("--all prints two tables, and CSV holds one", "drop --all, or use --json")
    with GatewayClient(get_settings()) as gw:
        doc = gw.orders(market=normalise_symbol(market) if market else None, history=history)
    opens = doc["open"] if history else doc
    report = Report(
        doc if history else opens,
        ORDER_FIELDS,
        records(opens, ORDER_FIELDS),
        ORDER_COLS,
        _order_rows(opens),
        title="open orders",
        empty=None if history else "no open orders",
        after=(lambda: _print_history(doc["history"])) if history else None,
    )
    emit(report, fmt, json_out)


def _print_history(events: list[dict[str, Any]]) -> None:
    from stockctl.cli.tables import fitted_table

    table = fitted_table(
        [Col("time", "left"), Col("event", "left"), Col("id"), Col("market", "left"), Col("detail", "left")],
        [
            [
                fmt_time(e["ts"]),
                e["event"],
                str(e.get("order_id", "-")),
                e["market"],
                e.get("reason") or f"{e.get('side', '')} {e.get('qty', '')}@{e.get('price') or 'market'}",
            ]
            for e in events
        ],
        console.width,
        title="order history",
    )
    console.print(table)


@app.command()
def amend(
    order_id: Annotated[int, typer.Argument(help="Order id (see `stockctl orders`).")],
    price: Annotated[str | None, typer.Option("--price", help="New price (loses time priority).")] = None,
    qty: Annotated[
        str | None, typer.Option("--qty", help="New total quantity; a decrease at the same price keeps priority.")
    ] = None,
    market: Annotated[
        str | None, typer.Option(help="Its market (looked up if not given).", autocompletion=complete_markets)
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change an open order's price and/or quantity; a new price that crosses trades at once."""
    from stockctl.client.api import GatewayClient, normalise_symbol
    from stockctl.exchange.validation import amend_problem, edge_decimal

    if amend_problem(price, qty, True) is not None:  # the only problem it can have here: bad_amend
        raise UsageError("nothing to amend", "give --price, --qty or both")
    for name, value in (("price", price), ("qty", qty)):
        if value is not None and not edge_decimal(value):
            raise UsageError(f"bad {name} {value!r}", "give a positive plain decimal, e.g. 10 or 100.5")
    with GatewayClient(get_settings()) as gw:
        doc = gw.amend(order_id, price=price, qty=qty, market=normalise_symbol(market) if market else None)
    if json_out:
        print_json(doc)
        return
    console.print(
        f"order [bold]{order_id}[/] amended: {doc['qty']}@{doc['price'] or 'market'},"
        f" open {doc['remaining']}, priority {doc['priority']}: {_events_summary(doc)}"
    )
    for fill in doc.get("filled", []):
        console.print(f"  filled {fill['qty']} @ {fill['price']} (fee {fill['fee']})")


@app.command()
def cancel(
    order_id: Annotated[int | None, typer.Argument(help="Order id (see `stockctl orders`).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Cancel all your open orders.")] = False,
    market: Annotated[
        str | None, typer.Option(help="With --all: only this market.", autocompletion=complete_markets)
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Cancel an order, or all of them."""
    from stockctl.client.api import GatewayClient, normalise_symbol

    if (order_id is None) == (not all_):
        raise UsageError("give an ORDER_ID or --all")
    with GatewayClient(get_settings()) as gw:
        if all_:
            doc = gw.cancel_all(normalise_symbol(market) if market else None)
        else:
            doc = gw.cancel(order_id, normalise_symbol(market) if market else None)  # type: ignore[arg-type]
    if json_out:
        print_json(doc)
    elif all_:
        console.print(f"cancelled {doc['cancelled']} orders")
    else:
        console.print(f"order {order_id} cancelled")


FILL_FIELDS = ("ts", "market", "side", "qty", "price", "fee", "liquidity", "order_id", "client_order_id", "trade_id")
FILL_COLS = [
    Col("time", "left"),
    Col("market", "left"),
    Col("side", "left"),
    Col("qty"),
    Col("price"),
    Col("fee", priority=2),
    Col("order", priority=1),
    Col("role", "left", priority=3),
]


@app.command()
def fills(
    limit: Annotated[int, typer.Option(min=1, max=FILLS_MAX, help="Most recent fills.")] = 50,
    json_out: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Your fills: time, market, side, qty, price, fee, order id."""
    from stockctl.cli.tables import records
    from stockctl.client.api import GatewayClient

    with GatewayClient(get_settings()) as gw:
        rows = gw.fills(limit)
    table_rows = [
        [
            fmt_time(f["ts"]),
            f["market"],
            f"[green]{f['side']}[/]" if f["side"] == "buy" else f"[red]{f['side']}[/]",
            f["qty"],
            f["price"],
            f["fee"],
            str(f["order_id"]),
            f["liquidity"],
        ]
        for f in rows
    ]
    report = Report(
        rows, FILL_FIELDS, records(rows, FILL_FIELDS), FILL_COLS, table_rows, title="fills", empty="no fills yet"
    )
    emit(report, fmt, json_out)


@app.command("balance")
def balance(json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """Available and reserved per asset."""
    from stockctl.client.api import GatewayClient

    with GatewayClient(get_settings()) as gw:
        doc = gw.balances()
    assets = sorted(doc.items())
    report = Report(
        doc,
        ("asset", "available", "reserved"),
        ([asset, v["available"], v["reserved"]] for asset, v in assets),
        [Col("asset", "left"), Col("available"), Col("reserved")],
        [[asset, v["available"], v["reserved"]] for asset, v in assets],
    )
    emit(report, fmt, json_out)


MARKET_FIELDS = ("symbol", "base", "quote", "tick_size", "lot_size", "min_qty", "max_qty", "max_price")


@app.command("markets")
def markets_cmd(json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """The exchange's markets: base and quote asset, tick size, lot size, order size and price bounds."""
    from stockctl.cli.tables import records
    from stockctl.client.api import GatewayClient

    with GatewayClient(get_settings()) as gw:
        rows = gw.markets()
    report = Report(
        rows,
        MARKET_FIELDS,
        records(rows, MARKET_FIELDS),
        [Col("market", "left"), Col("base", "left"), Col("quote", "left")]
        + [Col(f.replace("_", " "), priority=1) for f in MARKET_FIELDS[3:]],
        [[str(m.get(f, "")) for f in MARKET_FIELDS] for m in rows],
        empty="no markets",
    )
    emit(report, fmt, json_out)


def render_book(doc: dict[str, Any], depth: int) -> Table:
    from rich.table import Table

    bids, asks = doc["bids"][:depth], doc["asks"][:depth]
    biggest = max([Decimal(q) for _, q, *_ in bids + asks] or [Decimal(1)])
    table = Table(title=f"{doc['market']} (seq {doc.get('seq', '-')})", header_style="bold", box=None)
    for col, justify in (
        ("bid size", "right"),
        ("", "right"),
        ("bid", "right"),
        ("ask", "left"),
        (" ", "left"),
        ("ask size", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for i in range(max(len(bids), len(asks))):
        b = bids[i] if i < len(bids) else None
        a = asks[i] if i < len(asks) else None
        bar = lambda q: "█" * max(1, int(Decimal(q) / biggest * 12))  # noqa: E731
        table.add_row(
            b[1] if b else "",
            f"[green]{bar(b[1])}[/]" if b else "",
            f"[bold green]{b[0]}[/]" if b else "",
            f"[bold red]{a[0]}[/]" if a else "",
            f"[red]{bar(a[1])}[/]" if a else "",
            a[1] if a else "",
        )
    best_bid = Decimal(bids[0][0]) if bids else None
    best_ask = Decimal(asks[0][0]) if asks else None
    if best_bid is not None and best_ask is not None:
        table.caption = f"spread {best_ask - best_bid}  mid {(best_ask + best_bid) / 2}  last {doc.get('last') or '-'}"
    return table


@app.command()
def book(
    market: MarketArg,
    depth: Annotated[int, typer.Option(min=1, max=BOOK_DEPTH_MAX, help="Levels per side.")] = 10,
    watch: Annotated[bool, typer.Option("--watch", help="Keep the ladder live (table only).")] = False,
    json_out: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Depth ladder of a market: bids and asks with size bars, spread and mid."""
    import msgspec
    from rich.live import Live

    from stockctl.client.api import GatewayClient

    settings = get_settings()
    with GatewayClient(settings) as gw:
        doc = gw.book(market, depth)
    if not watch:
        levels = [("bid", p, q) for p, q, *_ in doc["bids"][:depth]]
        levels += [("ask", p, q) for p, q, *_ in doc["asks"][:depth]]
        report = Report(doc, ("side", "price", "qty"), levels, draw=lambda: console.print(render_book(doc, depth)))
        emit(report, fmt, json_out)
        return

    async def follow() -> None:
        from stockctl.sdk import Client  # the SDK keeps the book: snapshot, deltas, resync on a gap

        with Live(render_book(doc, depth), console=console.real, refresh_per_second=8) as live:
            async with Client(settings=settings) as client:
                async for local in client.book(market):
                    live.update(render_book(msgspec.to_builtins(local.to_update()), depth))

    import asyncio  # here: importing it costs every command's start-up

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


TRADE_FIELDS = ("ts", "trade_id", "market", "price", "qty", "taker_side")


@app.command()
def trades(
    market: MarketArg,
    limit: Annotated[int, typer.Option(min=1, max=FILLS_MAX, help="Most recent trades.")] = 20,
    json_out: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Recent trades of a market."""
    from stockctl.cli.tables import records
    from stockctl.client.api import GatewayClient, normalise_symbol

    with GatewayClient(get_settings()) as gw:
        rows = gw.trades(market, limit)
    table_rows = [
        [
            fmt_time(t["ts"]),
            t["price"],
            t["qty"],
            "[green]buy[/]" if t["taker_side"] == "buy" else "[red]sell[/]",
            str(t["trade_id"]),
        ]
        for t in rows
    ]
    cols = [Col("time", "left"), Col("price"), Col("qty"), Col("taker", "left"), Col("trade", priority=1)]
    report = Report(
        rows, TRADE_FIELDS, records(rows, TRADE_FIELDS), cols, table_rows, title=f"{normalise_symbol(market)} trades"
    )
    emit(report, fmt, json_out)


__all__ = ["app", "parse_expiry", "parse_order_spec"]
