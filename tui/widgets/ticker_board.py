"""The ticker board: every symbol and market, updated in place, flashing on change.

Quotes only land in ``pending``; a 50 ms timer applies them, so a row is rebuilt at most 20 times
a second however fast quotes come, and only rows whose cells changed are repainted
(:class:`tui.widgets.quote_table.QuoteTable` keeps each row's rendered line).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input

from stockctl.wire.marketdata import Quote
from tui.widgets.quote_table import QuoteTable

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 12
FLASH_S = 0.6
REDRAW_S = 0.05  # at most 20 redraws a second
COLUMNS = ("sym", "last", "chg", "chg %", "high", "low", "trend", "age")
COL_INDEX = {c: i for i, c in enumerate(COLUMNS)}
SORTS = ("symbol", "change %", "last", "age")


def sparkline(values: list[Decimal], width: int = SPARK_WIDTH) -> str:
    """Block characters scaled between the lowest and highest of the last ``width`` values."""
    values = values[-width:]
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[3] * len(values)
    scale = (len(SPARK) - 1) / (hi - lo)
    return "".join(SPARK[int((v - lo) * scale)] for v in values)


def fmt_age(seconds: float) -> str:
    """A short age: 4s, 3m, 2h."""
    if seconds < 60:
        return f"{max(0, int(seconds))}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds // 3600)}h"


def _dec(text: str | None) -> Decimal:
    try:
        return Decimal(text or "0")
    except InvalidOperation:
        return Decimal(0)


def _signed(text: str, suffix: str = "") -> Text:
    if text.startswith("-"):
        return Text(text + suffix, style="red")
    if text.strip("0.") == "":
        return Text(text + suffix)
    return Text("+" + text + suffix, style="green")


class TickerBoard(Vertical):
    """Live board of every symbol: last, change, change %, day range, trend, age.

    Quotes are merged into a model as they arrive and drawn at most 20 times a second;
    cells are updated in place. ``/`` filters, ``s`` cycles the sort order.
    """

    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    DEFAULT_CSS = """
    TickerBoard { height: 1fr; }
    TickerBoard > Input { display: none; height: 3; }
    TickerBoard.filtering > Input { display: block; }
    TickerBoard > QuoteTable { height: 1fr; }
    """

    class Selected(Message):
        """The highlighted symbol changed."""

        def __init__(self, symbol: str) -> None:
            super().__init__()
            self.symbol = symbol

    def __init__(
        self, now_ns: Callable[[], int] = time.time_ns, stale_after: float = 10.0, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.now_ns = now_ns
        self.stale_after = stale_after
        self.quotes: dict[str, Quote] = {}
        self.series: dict[str, deque[Decimal]] = {}
        self.symbols: list[str] = []
        self.pending: dict[str, Quote] = {}
        self.flash_until: dict[str, float] = {}
        self.stale: set[str] = set()
        self.direction: dict[str, int] = {}
        self.filter_text = ""
        self.watch: frozenset[str] | None = None
        self.watch_name = "all"
        self.sort_index = 0
        self.painted_at = 0.0
        self.ages_due = False
        self.border_title = "Tickers"

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter symbols", id="board-filter")
        yield QuoteTable([(c, c) for c in COLUMNS], id="board")

    @property
    def table(self) -> QuoteTable:
        return self.query_one("#board", QuoteTable)

    def on_mount(self) -> None:
        self.set_interval(REDRAW_S, self._flush)
        self.set_interval(1.0, self._ages_due)

    # --- data in ------------------------------------------------------------------------

    def seed(self, quotes: list[Quote], history: dict[str, list[str]], extra: list[str] = ()) -> None:
        """Start from REST: the latest quotes, recent prices per symbol, and symbols without quotes."""
        for sym, prices in history.items():
            self.series[sym] = deque((_dec(p) for p in prices), maxlen=SPARK_WIDTH)
        for q in quotes:
            self._add_symbol(q.symbol)
            self.pending[q.symbol] = q
        for sym in extra:
            self._add_symbol(sym)
        self._flush()
        self.table.move_cursor(0)

    def update_quote(self, quote: Quote) -> None:
        """A new quote; drawn on the next redraw tick."""
        old = self.quotes.get(quote.symbol) or self.pending.get(quote.symbol)
        if old is not None and old.seq > quote.seq and old.ts > quote.ts:
            return  # an older snapshot after a reconnect
        self._add_symbol(quote.symbol)
        self.pending[quote.symbol] = quote

    def _add_symbol(self, sym: str) -> None:
        if sym not in self.symbols:
            self.symbols.append(sym)
            self.series.setdefault(sym, deque(maxlen=SPARK_WIDTH))
            if self._matches(sym):
                self.table.add_row(self._cells(sym), key=sym)
                self._sort()

    # --- drawing ------------------------------------------------------------------------

    def _matches(self, sym: str) -> bool:
        return self.filter_text.upper() in sym and (self.watch is None or sym.upper() in self.watch)

    def _cells(self, sym: str) -> list[Text | str]:
        q = self.quotes.get(sym)
        if q is None:
            return [Text(sym, style="bold"), "-", "", "", "", "", "", ""]
        style = "dim" if sym in self.stale else ""
        flash = ""
        if self.flash_until.get(sym, 0) > time.monotonic():
            flash = self._flash_style(sym)
        return [
            Text(sym, style="bold " + style),
            Text(q.price, style=flash or ("bold " + style)),
            _signed(q.change),
            _signed(q.change_pct, "%"),
            Text(q.high, style=style),
            Text(q.low, style=style),
            Text(sparkline(list(self.series.get(sym, []))), style="cyan " + style),
            self._age_cell(sym),
        ]

    def _flash_style(self, sym: str) -> str:
        up = self.direction.get(sym, 0)
        return "bold white on dark_green" if up >= 0 else "bold white on dark_red"

    def _age_cell(self, sym: str) -> Text:
        q = self.quotes.get(sym)
        if q is None:
            return Text("")
        age = (self.now_ns() - q.ts) / 1e9
        return Text(fmt_age(age), style="bold yellow" if sym in self.stale else "dim")

    def _flush(self, now_too: bool = False) -> None:
        """Apply pending quotes, end expired flashes, update ages when due: one redraw at most every
        ``REDRAW_S``, counting the ones a key asked for (``now_too``: a key's own redraw, which
        also takes what is pending, and puts off the next data one)."""
        now = time.monotonic()
        if not now_too and now - self.painted_at < REDRAW_S * 0.9:
            return
        table = self.table
        if self.pending or self.ages_due or self.flash_until or now_too:
            self.painted_at = now
        if self.ages_due:
            self.ages_due = False
            self._tick_ages()
        changed = self.pending
        self.pending = {}
        for sym, q in changed.items():
            old = self.quotes.get(sym)
            self.quotes[sym] = q
            if old is None or old.seq != q.seq:
                self.series.setdefault(sym, deque(maxlen=SPARK_WIDTH)).append(_dec(q.price))
            if old is not None and old.price != q.price:
                self.direction[sym] = 1 if _dec(q.price) > _dec(old.price) else -1
                self.flash_until[sym] = now + FLASH_S
            if (self.now_ns() - q.ts) / 1e9 > self.stale_after:
                self.stale.add(sym)
            else:
                self.stale.discard(sym)
            if sym in table.rows:
                table.update_row(sym, self._cells(sym))
        for sym, until in list(self.flash_until.items()):
            if until <= now:
                del self.flash_until[sym]
                if sym in table.rows and sym in self.quotes:
                    table.update_cell(sym, "last", self._cells(sym)[1])
        if changed and SORTS[self.sort_index] != "symbol":
            self._sort()

    def _ages_due(self) -> None:
        self.ages_due = True

    def _tick_ages(self) -> None:
        """Once a second: ages, and dimming of symbols with no update for ``stale_after`` s."""
        table = self.table
        for sym, q in self.quotes.items():
            if sym not in table.rows:
                continue
            was = sym in self.stale
            if (self.now_ns() - q.ts) / 1e9 > self.stale_after:
                self.stale.add(sym)
            else:
                self.stale.discard(sym)
            if was != (sym in self.stale):
                table.update_row(sym, self._cells(sym))
            else:
                table.update_cell(sym, "age", self._age_cell(sym))

    # --- sorting and filtering ----------------------------------------------------------

    def _sort(self) -> None:
        mode = SORTS[self.sort_index]
        quotes = self.quotes

        def key(sym: str) -> object:
            q = quotes.get(sym)
            if mode == "symbol" or q is None:
                return (0, sym) if mode == "symbol" else (1, sym)
            if mode == "change %":
                return (0, -_dec(q.change_pct))
            if mode == "last":
                return (0, -_dec(q.price))
            return (0, -q.ts)

        self.table.set_order(sorted(self.table.order, key=key))

    def action_cycle_sort(self) -> None:
        """Sort by the next column: symbol, change %, last, age."""
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._flush(now_too=True)
        self._sort()
        self.border_subtitle = f"sorted by {SORTS[self.sort_index]}"

    def action_filter(self) -> None:
        """Show the filter box."""
        self.add_class("filtering")
        self.query_one(Input).focus()

    def action_clear_filter(self) -> None:
        """Hide the filter box and show every symbol."""
        box = self.query_one(Input)
        box.value = ""
        self.apply_filter("")
        self.remove_class("filtering")
        self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            self.remove_class("filtering")
        self.table.focus()

    def apply_filter(self, text: str) -> None:
        """Show only symbols containing ``text`` (case-insensitive)."""
        self.filter_text = text.strip()
        table = self.table
        for sym in self.symbols:
            shown = sym in table.rows
            if self._matches(sym) and not shown:
                table.add_row(self._cells(sym), key=sym)
            elif not self._matches(sym) and shown:
                table.remove_row(sym)
        self._sort()
        self.border_subtitle = f"filter: {self.filter_text}" if self.filter_text else ""

    def set_watchlist(self, name: str, symbols: frozenset[str] | None) -> None:
        """Show only ``symbols`` (None: every symbol), under the watchlist's name; the filter still applies."""
        self.watch_name, self.watch = name, symbols
        self.border_title = "Tickers" if symbols is None else f"Tickers · {name}"
        self.apply_filter(self.filter_text)

    def visible_symbols(self) -> list[str]:
        """Symbols in the order the board shows them."""
        return list(self.table.order)

    def on_quote_table_row_highlighted(self, event: QuoteTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.Selected(event.key))
