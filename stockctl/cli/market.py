"""``prices``, ``price``, ``history``, ``candles``, ``signals``, ``watch``: market data commands.

The table commands print ``--format table|json|csv`` through ``stockctl.cli.tables.emit``;
the gateway client and the wire types are imported inside the commands (start-up time).
"""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer

from stockctl.cli.common import (
    JsonOpt,
    console,
    emit_line,
    fmt_time,
    get_settings,
    iso_time,
    signed_style,
)
from stockctl.cli.complete import complete_symbols
from stockctl.cli.tables import Col, FormatOpt, Report, emit, fitted_table
from stockctl.errors import UsageError

if TYPE_CHECKING:
    from rich.table import Table

    from stockctl.client.api import GatewayClient
    from stockctl.wire.marketdata import Quote, Signal

app = typer.Typer()

SPARK = "▁▂▃▄▅▆▇█"

SymbolArg = Annotated[
    str, typer.Argument(help="Symbol, e.g. AAPL (TAB completes).", autocompletion=complete_symbols, show_default=False)
]

LATEST_MAX = 10_000
"""The most of the latest points, candles or signals one call shows: the gateway's bound."""
RANGE_MAX = 100_000
"""The most points or candles of a range one call shows (it pages through the gateway's pages)."""


def _check_latest(limit: int, ranged: bool, what: str) -> None:
    if not ranged and limit > LATEST_MAX:
        raise UsageError(
            f"--limit {limit} is over {LATEST_MAX:,} for the latest {what}",
            f"give a range (--since 1h, --from) for up to {RANGE_MAX:,}",
        )


def quote_doc(q: Quote) -> dict:
    import msgspec

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


PRICE_CSV = ("symbol", "price", "change", "change_pct", "open", "high", "low", "volume", "sma_fast", "sma_slow", "ts")


@app.command()
def prices(json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """Latest price of every symbol: last, change, change %, day range, time."""
    from stockctl.client.api import GatewayClient

    with GatewayClient(get_settings()) as client:
        quotes = client.quotes()
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
    csv_rows = (
        [
            *(q.symbol, q.price, q.change, q.change_pct, q.open, q.high, q.low, q.volume),
            *(q.sma_fast, q.sma_slow, iso_time(q.ts)),
        ]
        for q in quotes
    )
    report = Report(
        [quote_doc(q) for q in quotes],
        PRICE_CSV,
        csv_rows,
        PRICE_COLS,
        rows,
        empty="no prices yet: is the publisher running? `stockctl status`",
    )
    emit(report, fmt, json_out)


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
def price(symbol: SymbolArg, json_out: JsonOpt = False) -> None:
    """Latest quote of one symbol."""
    from stockctl.cli.common import print_json
    from stockctl.client.api import GatewayClient

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
    symbol: SymbolArg,
    limit: Annotated[
        int,
        typer.Option(
            min=1, max=RANGE_MAX, help=f"Points to show: the latest 1-{LATEST_MAX}, or a range's first 1-{RANGE_MAX}."
        ),
    ] = 20,
    since: SinceOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    after: Annotated[str | None, typer.Option("--after", help="Continue a range after this TS:SEQ cursor.")] = None,
    json_out: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Price points of a symbol, oldest first: the latest, or a range (--since/--from/--to) page by page."""
    from stockctl.client.api import GatewayClient, normalise_symbol

    cursor = None
    ranged = _ranged(since, start, end, after)
    _check_latest(limit, ranged, "points")
    with GatewayClient(get_settings()) as client:
        if ranged:
            points, cursor = client.history_range(symbol, limit, since=since, to=end, after=after, **{"from": start})
        else:
            points = client.history(symbol, limit)
    report = Report(
        [{"price": p.price, "ts": iso_time(p.ts), "ts_ns": p.ts, "seq": p.seq} for p in points],
        ("ts", "ts_ns", "seq", "price"),
        ([iso_time(p.ts), p.ts, p.seq, p.price] for p in points),
        [Col("time", "left"), Col("seq"), Col("price")],
        [[fmt_time(p.ts), str(p.seq), p.price] for p in points],
        title=f"{normalise_symbol(symbol)}: {'' if ranged else 'last '}{len(points)} prices",
        after=lambda: _more(cursor, "points"),
    )
    emit(report, fmt, json_out)


CANDLE_COLS = [
    Col("start", "left"),
    Col("open"),
    Col("high"),
    Col("low"),
    Col("close"),
    Col("volume", priority=1),
    Col("ticks", priority=2),
]


@app.command()
def candles(
    symbol: SymbolArg,
    interval: Annotated[str, typer.Option("--interval", "-i", help="Candle interval: 1s, 1m, 1h.")] = "1m",
    limit: Annotated[
        int,
        typer.Option(
            min=1, max=RANGE_MAX, help=f"Candles to show: the latest 1-{LATEST_MAX}, or a range's first 1-{RANGE_MAX}."
        ),
    ] = 20,
    since: SinceOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    after: Annotated[str | None, typer.Option("--after", help="Continue a range after this bucket start (ns).")] = None,
    json_out: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """OHLCV candles of a symbol, oldest first: the latest, or a range (--since/--from/--to) page by page."""
    import msgspec

    from stockctl.client.api import GatewayClient, normalise_symbol

    cursor = None
    ranged = _ranged(since, start, end, after)
    _check_latest(limit, ranged, "candles")
    with GatewayClient(get_settings()) as client:
        if ranged:
            rows, cursor = client.candles_range(
                symbol, interval, limit, since=since, to=end, after=after, **{"from": start}
            )
        else:
            rows = client.candles(symbol, interval, limit)
    table_rows = []
    for c in rows:
        style = "green" if Decimal(c.close) >= Decimal(c.open) else "red"
        table_rows.append(
            [fmt_time(c.start)[:8], c.open, c.high, c.low, f"[{style}]{c.close}[/]", f"{c.volume:,}", str(c.count)]
        )
    sym = normalise_symbol(symbol)
    report = Report(
        [{**msgspec.to_builtins(c), "start_ns": c.start, "start": iso_time(c.start)} for c in rows],
        ("start", "start_ns", "open", "high", "low", "close", "volume", "count"),
        ([iso_time(c.start), c.start, c.open, c.high, c.low, c.close, c.volume, c.count] for c in rows),
        CANDLE_COLS,
        table_rows,
        title=f"{sym} {interval} candles",
        empty=f"no {interval} candles for {sym}" + (" in that range" if ranged else " yet"),
        after=lambda: _more(cursor, "candles"),
    )
    emit(report, fmt, json_out)


@app.command()
def signals(
    symbol: SymbolArg,
    limit: Annotated[int, typer.Option(min=1, max=LATEST_MAX, help="Most recent signals to show.")] = 20,
    json_out: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """SMA crossover signals of a symbol (BUY: fast crossed above slow)."""
    import msgspec

    from stockctl.client.api import GatewayClient, normalise_symbol

    with GatewayClient(get_settings()) as client:
        rows = client.signals(symbol, limit)
    sym = normalise_symbol(symbol)
    report = Report(
        [{**msgspec.to_builtins(s), "ts_ns": s.ts, "ts": iso_time(s.ts)} for s in rows],
        ("ts", "ts_ns", "side", "price", "sma_fast", "sma_slow"),
        ([iso_time(s.ts), s.ts, s.side, s.price, s.sma_fast, s.sma_slow] for s in rows),
        [Col("time", "left"), Col("side", "left"), Col("price"), Col("SMA fast"), Col("SMA slow")],
        [[fmt_time(s.ts), _signal_cell(s.side), s.price, s.sma_fast, s.sma_slow] for s in rows],
        title=f"{sym} SMA signals",
        empty=f"no SMA crossovers for {sym} yet (the slow SMA needs its full window first)",
    )
    emit(report, fmt, json_out)


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
        from stockctl.wire.marketdata import Signal

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
    symbols: Annotated[
        list[str], typer.Argument(help="Symbols to watch (TAB completes).", autocompletion=complete_symbols)
    ],
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many updates.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print each update as one JSON line.")] = False,
) -> None:
    """Live table of quotes: price, change, sparkline, SMA fast/slow, last signal."""
    import msgspec
    from rich.live import Live

    from stockctl.client.api import GatewayClient, normalise_symbol
    from stockctl.wire.marketdata import quote_decoder, signal_decoder

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
        live_ctx = _NoLive() if json_out else Live(board.render(), console=console.real, refresh_per_second=8)
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

    import asyncio  # here: importing it costs every command's start-up

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *_: object) -> None:
        return None
