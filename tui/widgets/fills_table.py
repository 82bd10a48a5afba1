"""The user's fills, newest first, added as they happen."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.widgets.signals_log import clock
from tui.widgets.table import Table

KEEP = 200


def fill_from_trade(trade: dict[str, Any], user: str) -> dict[str, Any] | None:
    """A trade event seen from ``user``'s side (None if the user is on neither side)."""
    if trade.get("taker_user") == user:
        role = "taker"
        side = trade.get("taker_side", "")
    elif trade.get("maker_user") == user:
        role = "maker"
        side = "sell" if trade.get("taker_side") == "buy" else "buy"
    else:
        return None
    return {
        "ts": trade.get("ts", 0),
        "market": trade.get("market", ""),
        "side": side,
        "qty": trade.get("qty", ""),
        "price": trade.get("price", ""),
        "fee": trade.get(f"{role}_fee", ""),
        "liquidity": role,
        "order_id": trade.get(f"{role}_order_id"),
        "trade_id": trade.get("trade_id"),
    }


class FillsTable(Table):
    """Fills: time, market, side, qty, price, fee, role (deduplicated by trade and side)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.border_title = "Fills"

    def on_mount(self) -> None:
        self.add_column("time", key="time", width=8)  # HH:MM:SS: fixed, so it never jumps
        for col in ("market", "side", "qty", "price", "fee", "role"):
            self.add_column(col, key=col)

    def add_fills(self, fills: list[dict[str, Any]]) -> int:
        """Add fills not shown yet; returns how many were new."""
        added = 0
        for f in fills:
            key = f"{f.get('trade_id')}:{f.get('order_id')}"
            if key in self.rows:
                continue
            side = str(f.get("side", ""))
            self.add_row(
                clock(int(f.get("ts") or 0)),
                f.get("market", ""),
                Text(side, "green" if side == "buy" else "red"),
                f.get("qty", ""),
                f.get("price", ""),
                f.get("fee", ""),
                f.get("liquidity", ""),
                key=key,
            )
            added += 1
        if added:
            self.sort("time", reverse=True)
            while self.row_count > KEEP:
                self.remove_row(self.ordered_rows[-1].key)
        return added
