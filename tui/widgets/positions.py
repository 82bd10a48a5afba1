"""Positions per market from the user's fills, marked to the board's last prices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from rich.text import Text

from tui.positions import Position, fill_key, positions_from_fills
from tui.widgets.table import Table

REDRAW_S = 0.1
COLUMNS = ("market", "qty", "avg cost", "last", "unrealised", "realised")


def fmt_amount(value: Decimal | None, places: int = 2) -> str:
    """``value`` rounded half-even to ``places`` decimals, never in exponent form ("-" for None)."""
    if value is None:
        return "-"
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return format(q + 0, "f")  # + 0 turns -0.00 into 0.00


def fmt_qty(value: Decimal) -> str:
    """A quantity without trailing zeros or exponent."""
    if value == 0:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _pnl(value: Decimal | None) -> Text:
    text = fmt_amount(value)
    if value is None or text.strip("-0.") == "":
        return Text(text)
    return Text(text if value < 0 else "+" + text, style="red" if value < 0 else "green")


def _dec(text: Any) -> Decimal | None:
    try:
        return Decimal(str(text)) if text not in (None, "") else None
    except InvalidOperation:
        return None


class PositionsTable(Table):
    """Market, quantity, average cost, last, unrealised and realised P&L (fees included).

    Fills (REST and live trade events, deduplicated) and last prices are merged as they
    arrive; the table is recomputed and redrawn at most 10 times a second.
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.fills: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
        self.last: dict[str, Decimal] = {}
        self.positions: dict[str, Position] = {}
        self.dirty = False
        self.border_title = "Positions"

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col, key=col)
        self.set_interval(REDRAW_S, self._flush)

    def add_fills(self, fills: Iterable[Mapping[str, Any]]) -> int:
        """Merge fills (duplicates ignored); returns how many were new."""
        added = 0
        for f in fills:
            key = fill_key(f)
            if key not in self.fills:
                self.fills[key] = f
                added += 1
        if added:
            self.positions = positions_from_fills(self.fills.values())
            self.dirty = True
        return added

    def set_last(self, market: str, price: str) -> None:
        """The latest price of ``market`` (only redrawn if there is a position in it)."""
        value = _dec(price)
        if value is None or self.last.get(market) == value:
            return
        self.last[market] = value
        if market in self.positions:
            self.dirty = True

    def _cells(self, pos: Position) -> list[Any]:
        last = self.last.get(pos.market)
        qty = Text(fmt_qty(pos.qty), style="green" if pos.qty > 0 else "red" if pos.qty < 0 else "dim")
        return [
            pos.market,
            qty,
            fmt_amount(pos.avg_cost, 4) if pos.qty else "-",
            fmt_amount(last) if last is not None else "-",
            _pnl(pos.unrealised(last)),
            _pnl(pos.realised),
        ]

    def _flush(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        for market in sorted(self.positions):
            cells = self._cells(self.positions[market])
            if market in self.rows:
                for col, cell in zip(COLUMNS, cells, strict=True):
                    self.update_cell(market, col, cell)
            else:
                self.add_row(*cells, key=market)
                self.sort("market")
