"""Trade tape of the selected market: newest trades at the top."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text

from tui.widgets.signals_log import clock
from tui.widgets.table import Table

REDRAW_S = 0.05
KEEP = 100


class Stamp(str):
    """A time cell that sorts by trade id (several trades share a second)."""

    order: int = 0


def stamp(ts: int, trade_id: object) -> Stamp:
    cell = Stamp(clock(ts))
    cell.order = int(trade_id) if str(trade_id).isdigit() else 0
    return cell


class TradeTape(Table):
    """Public trades of one market (price, qty, taker side), kept per market."""

    DEFAULT_CSS = """
    TradeTape { height: 1fr; width: 1fr; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="none", show_cursor=False)
        self.tapes: dict[str, deque[dict[str, Any]]] = {}
        self.seen: dict[str, set[int]] = {}
        self.market = ""
        self.pending: list[dict[str, Any]] = []
        self.border_title = "Trades"

    def on_mount(self) -> None:
        self.add_column("time", key="time", width=8)  # HH:MM:SS: fixed, so it never jumps
        for col in ("price", "qty", "side"):
            self.add_column(col, key=col)
        self.set_interval(REDRAW_S, self._flush)

    def add_trades(self, market: str, trades: list[dict[str, Any]]) -> None:
        """New trades of a market (duplicates after a reconnect are dropped)."""
        tape = self.tapes.setdefault(market, deque(maxlen=KEEP))
        seen = self.seen.setdefault(market, set())
        for t in trades:
            tid = t.get("trade_id")
            if tid in seen:
                continue
            seen.add(tid)
            tape.append(t)
            if market == self.market:
                self.pending.append(t)
        if not self.market:
            self.show(market)

    def show(self, market: str) -> None:
        """Switch the tape to ``market`` (the only time the rows are rebuilt)."""
        self.market = market
        self.border_title = f"Trades {market}"
        self.clear()
        self.pending = list(self.tapes.get(market, ()))

    def _flush(self) -> None:
        """Add pending trades as rows, newest first (at most 20 times a second)."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        for t in batch:
            side = t.get("taker_side", "")
            key = str(t.get("trade_id"))
            if key in self.rows:
                continue
            self.add_row(
                stamp(int(t.get("ts", 0)), t.get("trade_id")),
                Text(str(t.get("price", "")), "green" if side == "buy" else "red"),
                str(t.get("qty", "")),
                side,
                key=key,
            )
        self.sort("time", key=lambda v: getattr(v, "order", 0), reverse=True)
        while self.row_count > KEEP:
            self.remove_row(self.ordered_rows[-1].key)
