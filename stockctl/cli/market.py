"""``prices``, ``price``, ``history``, ``candles``, ``signals``, ``watch``: market data commands."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import sys
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import msgspec
import typer
from rich.live import Live
from rich.table import Table

from stockctl.cli.common import (
    JsonOpt,
    console,
    emit_line,
    fmt_time,
    get_settings,
    iso_time,
    print_json,
    signed_style,
)
from stockctl.cli.tables import Col, fitted_table
from stockctl.client.api import GatewayClient, normalise_symbol
from stockctl.errors import UsageError
from stockctl.wire.marketdata import Quote, Signal, quote_decoder, signal_decoder

app = typer.Typer()

SPARK = "▁▂▃▄▅▆▇█"


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def quote_doc(q: Quote) -> dict:
    return {**msgspec.to_builtins(q), "ts_ns": q.ts, "ts": iso_time(q.ts)}


def sparkline(prices: list[str], width: int = 30) -> str:
    values = [Decimal(p) for p in prices[-width:]]
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[3] * len(values)
    scale = (len(SPARK) - 1) / (hi - lo)
    return "".join(SPARK[int((v - lo) * scale)] for v in values)


def _signal_cell(side: str | None) -> str:
    if side == "BUY":
        return "[bold green]BUY[/]"
    if side == "SELL":
        return "[bold red]SELL[/]"
    return "-"


@app.command()
def prices(
    json_out: JsonOpt = False,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv (for scripts).")] = Format.table,
) -> None:
    """Latest price of every symbol: last, change, change %, day range, time."""
    with GatewayClient(get_settings()) as client:
        quotes = client.quotes()
    if json_out or fmt is Format.json:
        print_json([quote_doc(q) for q in quotes])
        return
    if fmt is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["symbol", "price", "change", "change_pct", "open", "high", "low", "volume", "ts"])
        for q in quotes:
            writer.writerow(
                [q.symbol, q.price, q.change, q.change_pct, q.open, q.high, q.low, q.volume, iso_time(q.ts)]
            )
        return
    if not quotes:
        console.print("no prices yet: is the publisher running? `stockctl status`")
        return
    rows = [
        [
            q.symbol,
            f"[bold]{q.price}[/]",
            signed_style(q.change),
            signed_style(q.change_pct) + "%",
            q.high,
            q.low,
            f"{q.volume:,}",
            q.sma_fast or "-",
            q.sma_slow or "-",
            _signal_cell(q.signal),
            fmt_time(q.ts),
        ]
        for q in quotes
    ]
    console.print(fitted_table(PRICE_COLS, rows, console.width))


PRICE_COLS = [
    Col("symbol", "left"),
    Col("last"),
    Col("change"),
    Col("chg %"),
    Col("high", priority=3),
    Col("low", priority=3),
    Col("volume", priority=5),
    Col("SMA fast", priority=4),
    Col("SMA slow", priority=4),
    Col("signal", "left", priority=2),
    Col("time", priority=1),
]


@app.command()
def price(symbol: str, json_out: JsonOpt = False) -> None:
    """Latest quote of one symbol."""
    with GatewayClient(get_settings()) as client:
        q = client.quote(symbol)
    if json_out:
        print_json(quote_doc(q))
        return
    console.print(
        f"[bold]{q.symbol}[/] {q.price}  {signed_style(q.change)} ({signed_style(q.change_pct)}%)"
        f"  high {q.high}  low {q.low}  open {q.open}  vol {q.volume:,}  at {fmt_time(q.ts)}"
        f"  seq {q.seq}"
    )


SinceOpt = Annotated[
    str | None, typer.Option("--since", help="From this long ago: 90s, 2h, 30d (the history store beyond Redis).")
]
FromOpt = Annotated[str | None, typer.Option("--from", help="Start: ISO 8601 (naive is UTC) or epoch s/ms/ns.")]
ToOpt = Annotated[str | None, typer.Option("--to", help="End (exclusive), like --from.")]


def _ranged(since: str | None, start: str | None, end: str | None, after: str | None) -> bool:
    return any(v is not None for v in (since, start, end, after))


def _more(cursor: str | None, what: str) -> None:
    if cursor is not None:
        console.print(f"[dim]more: the same command with --after {cursor} (next {what})[/]")


@app.command()
def history(
    symbol: str,
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="Points to show (the latest, or a range's first).")
    ] = 20,
    since: SinceOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    after: Annotated[str | None, typer.Option("--after", help="Continue a range after this TS:SEQ cursor.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Price points of a symbol, oldest first: the latest, or a range (--since/--from/--to) page by page."""
    cursor = None
    with GatewayClient(get_settings()) as client:
        if _ranged(since, start, end, after):
            points, cursor = client.history_range(symbol, limit, since=since, to=end, after=after, **{"from": start})
        else:
            points = client.history(symbol, limit)
    if json_out:
        print_json([{"price": p.price, "ts": iso_time(p.ts), "ts_ns": p.ts, "seq": p.seq} for p in points])
        return
    rows = [[fmt_time(p.ts), str(p.seq), p.price] for p in points]
    ranged = _ranged(since, start, end, after)
    title = f"{normalise_symbol(symbol)}: {'' if ranged else 'last '}{len(points)} prices"
    console.print(fitted_table([Col("time", "left"), Col("seq"), Col("price")], rows, console.width, title))
    _more(cursor, "points")


@app.command()
def candles(
    symbol: str,
    interval: Annotated[str, typer.Option("--interval", "-i", help="Candle interval: 1s, 1m, 1h.")] = "1m",
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="Candles to show (the latest, or a range's first).")
    ] = 20,
    since: SinceOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    after: Annotated[str | None, typer.Option("--after", help="Continue a range after this bucket start (ns).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """OHLCV candles of a symbol, oldest first: the latest, or a range (--since/--from/--to) page by page."""
    cursor = None
    with GatewayClient(get_settings()) as client:
        if _ranged(since, start, end, after):
            rows, cursor = client.candles_range(
                symbol, interval, limit, since=since, to=end, after=after, **{"from": start}
            )
        else:
            rows = client.candles(symbol, interval, limit)
    if json_out:
        print_json([{**msgspec.to_builtins(c), "start_ns": c.start, "start": iso_time(c.start)} for c in rows])
        return
    if not rows:
        console.print(
            f"no {interval} candles for {normalise_symbol(symbol)}"
            + (" in that range" if _ranged(since, start, end, after) else " yet")
        )
        return
    table_rows = []
    for c in rows:
        style = "green" if Decimal(c.close) >= Decimal(c.open) else "red"
        table_rows.append(
            [fmt_time(c.start)[:8], c.open, c.high, c.low, f"[{style}]{c.close}[/]", f"{c.volume:,}", str(c.count)]
        )
    cols = [
        Col("start", "left"),
        Col("open"),
        Col("high"),
        Col("low"),
        Col("close"),
        Col("volume", priority=1),
        Col("ticks", priority=2),
    ]
    console.print(fitted_table(cols, table_rows, console.width, f"{normalise_symbol(symbol)} {interval} candles"))
    _more(cursor, "candles")


@app.command()
def signals(
    symbol: str,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Most recent signals to show.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """SMA crossover signals of a symbol (BUY: fast crossed above slow)."""
    with GatewayClient(get_settings()) as client:
        rows = client.signals(symbol, limit)
    if json_out:
        print_json([{**msgspec.to_builtins(s), "ts_ns": s.ts, "ts": iso_time(s.ts)} for s in rows])
        return
    if not rows:
        console.print(
            f"no SMA crossovers for {normalise_symbol(symbol)} yet (the slow SMA needs its full window first)"
        )
        return
    table_rows = [[fmt_time(s.ts), _signal_cell(s.side), s.price, s.sma_fast, s.sma_slow] for s in rows]
    cols = [Col("time", "left"), Col("side", "left"), Col("price"), Col("SMA fast"), Col("SMA slow")]
    console.print(fitted_table(cols, table_rows, console.width, f"{normalise_symbol(symbol)} SMA signals"))


class WatchBoard:
    """Rows of the live ``watch`` table, updated in place from quotes and signals."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols
        self.quotes: dict[str, Quote] = {}
        self.prices: dict[str, list[str]] = {s: [] for s in symbols}
        self.last_signal: dict[str, Signal] = {}

    def seed(self, client: GatewayClient) -> None:
        for sym in self.symbols:
            self.quotes[sym] = client.quote(sym)
            self.prices[sym] = [p.price for p in client.history(sym, 30)]
            sigs = client.signals(sym, 1)
            if sigs:
                self.last_signal[sym] = sigs[-1]

    def update(self, item: Quote | Signal) -> None:
        if isinstance(item, Signal):
            self.last_signal[item.symbol] = item
            return
        self.quotes[item.symbol] = item
        series = self.prices[item.symbol]
        series.append(item.price)
        del series[:-30]

    def render(self) -> Table:
        rows = []
        for sym in self.symbols:
            q = self.quotes.get(sym)
            if q is None:
                rows.append([sym, "-", "", "", "", "", "", "", ""])
                continue
            sig = self.last_signal.get(sym)
            sig_cell = f"{_signal_cell(sig.side)} {sig.price} {fmt_time(sig.ts)[:8]}" if sig else "-"
            rows.append(
                [
                    sym,
                    f"[bold]{q.price}[/]",
                    signed_style(q.change),
                    signed_style(q.change_pct) + "%",
                    f"[cyan]{sparkline(self.prices[sym], 20)}[/]",
                    q.sma_fast or "-",
                    q.sma_slow or "-",
                    sig_cell,
                    fmt_time(q.ts),
                ]
            )
        return fitted_table(WATCH_COLS, rows, console.width, title="live quotes (Ctrl-C to stop)")


WATCH_COLS = [
    Col("symbol", "left"),
    Col("last"),
    Col("change", priority=2),
    Col("chg %"),
    Col("trend", "left", priority=1),
    Col("SMA fast", priority=4),
    Col("SMA slow", priority=4),
    Col("last signal", "left", priority=3),
    Col("time", priority=5),
]


@app.command()
def watch(
    symbols: Annotated[list[str], typer.Argument(help="Symbols to watch.")],
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many updates.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print each update as one JSON line.")] = False,
) -> None:
    """Live table of quotes: price, change, sparkline, SMA fast/slow, last signal."""
    syms = [normalise_symbol(s) for s in symbols]
    if len(set(syms)) != len(syms):
        raise UsageError("a symbol is given twice")
    settings = get_settings()
    board = WatchBoard(syms)
    with GatewayClient(settings) as client:
        board.seed(client)  # also checks every symbol exists, with the list of known ones
    channels = [f"{kind}:{sym}" for sym in syms for kind in ("quotes", "signals")]

    async def follow() -> None:
        from stockctl.sdk.stream import stream  # the SDK's socket loop: renews, reconnects, fails over

        seen = 0
        live_ctx = _NoLive() if json_out else Live(board.render(), console=console, refresh_per_second=8)
        with live_ctx as live:
            async for kind, _channel, data in stream(settings, channels):
                if kind == "snapshot":
                    continue  # seeded from REST already; a reconnect's snapshot adds nothing
                item: Quote | Signal = (quote_decoder if kind == "quote" else signal_decoder).decode(data)
                if json_out:
                    doc = msgspec.to_builtins(item)
                    doc["type"] = kind
                    if not emit_line(json.dumps(doc)):
                        return
                else:
                    board.update(item)
                    live.update(board.render())
                seen += 1
                if count is not None and seen >= count:
                    return

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *_: object) -> None:
        return None
