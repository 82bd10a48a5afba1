"""Depth ladder of the selected market: bids and asks with size bars, spread and mid."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from rich.table import Table
from rich.text import Text
from textual.widget import Widget

REDRAW_S = 0.05
BAR = 10
SIZE = "size"


def _dec(text: str | None) -> Decimal:
    try:
        return Decimal(text or "0")
    except InvalidOperation:
        return Decimal(0)


def spread_mid(bids: list[list[str]], asks: list[list[str]]) -> tuple[Decimal | None, Decimal | None]:
    """Best ask minus best bid, and their midpoint (None when a side is empty)."""
    if not bids or not asks:
        return None, None
    bid, ask = _dec(bids[0][0]), _dec(asks[0][0])
    return ask - bid, (ask + bid) / 2


class OrderBook(Widget):
    """The book of one market, redrawn at most 20 times a second from the latest ladder."""

    DEFAULT_CSS = """
    OrderBook { height: 1fr; width: 1fr; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.books: dict[str, tuple[list[list[str]], list[list[str]], str | None, int]] = {}
        self.market = ""
        self.dirty = False
        self.border_title = "Order book"

    def on_mount(self) -> None:
        self.set_interval(REDRAW_S, self._flush)

    def update_book(
        self, market: str, bids: list[list[str]], asks: list[list[str]], last: str | None, seq: int
    ) -> None:
        """Store a market's ladder; redrawn if it is the shown market."""
        self.books[market] = (bids, asks, last, seq)
        if not self.market:
            self.show(market)
        if market == self.market:
            self.dirty = True

    def show(self, market: str) -> None:
        """Switch the ladder to ``market``."""
        self.market = market
        self.border_title = f"Book {market}"
        self.dirty = True

    def _flush(self) -> None:
        if self.dirty:
            self.dirty = False
            self.refresh()

    def render(self) -> Table | Text:
        if not self.market or self.market not in self.books:
            return Text(f"no book for {self.market or 'any market'} yet", style="dim")
        bids, asks, last, seq = self.books[self.market]
        rows = max(1, self.content_size.height - 3)
        bids, asks = bids[:rows], asks[:rows]
        biggest = max([_dec(q) for _, q, *_ in bids + asks] or [Decimal(1)]) or Decimal(1)
        # The headers are part of the widths: a column narrower than "size" would cut it to "si…".
        widest_q = max([len(SIZE), *(len(q) for _, q, *_ in bids + asks)])
        widest_p = max([len("bid"), *(len(p) for p, *_ in bids + asks)])
        # Six columns with one space of padding each side: 12 columns of padding.
        bar_w = max(1, min(BAR, (self.content_size.width - 12 - 2 * widest_q - 2 * widest_p) // 2))
        table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
        table.add_column(SIZE, justify="right", no_wrap=True, min_width=widest_q)
        table.add_column("", justify="right", no_wrap=True, overflow="crop", max_width=bar_w)
        table.add_column("bid", justify="right", no_wrap=True, min_width=widest_p)
        table.add_column("ask", justify="left", no_wrap=True, min_width=widest_p)
        table.add_column("", justify="left", no_wrap=True, overflow="crop", max_width=bar_w)
        table.add_column(SIZE, justify="left", no_wrap=True, min_width=widest_q)

        def bar(q: str) -> str:
            return "█" * max(1, int(_dec(q) / biggest * bar_w))

        for i in range(max(len(bids), len(asks))):
            b = bids[i] if i < len(bids) else None
            a = asks[i] if i < len(asks) else None
            table.add_row(
                b[1] if b else "",
                Text(bar(b[1]), "green") if b else "",
                Text(b[0], "bold green") if b else "",
                Text(a[0], "bold red") if a else "",
                Text(bar(a[1]), "red") if a else "",
                a[1] if a else "",
            )
        spread, mid = spread_mid(bids, asks)
        parts = [
            f"spread {spread if spread is not None else '-'}",
            f"mid {mid.normalize() if mid is not None else '-'}",
            f"last {last or '-'}",
            f"seq {seq}",
        ]
        # One line, always: in a narrow panel the least useful parts go first.
        while len(parts) > 2 and len("  ".join(parts)) > self.content_size.width:
            parts.pop()
        table.caption = "  ".join(parts)
        return table
