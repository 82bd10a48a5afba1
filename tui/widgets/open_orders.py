"""The user's open orders, updated in place from order events; ``x`` cancels the selected one and
``e`` edits it (amend: the order entry form takes its price and quantity). A pending stop shows
its stop price; an iceberg its whole quantity (the owner's view)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from tui.widgets.table import Table

COLUMNS = ("id", "market", "side", "price", "qty", "open")


def _zero(text: str) -> bool:
    try:
        return Decimal(text) == 0
    except InvalidOperation:
        return False


class OpenOrders(Table):
    """Open orders; rows appear on ``accepted``, shrink on trades, leave when done."""

    BINDINGS = [Binding("x", "cancel_selected", "Cancel order"), Binding("e", "edit_selected", "Amend order")]

    class EditRequested(Message):
        """The user asked to amend one order."""

        def __init__(self, order: dict[str, Any]) -> None:
            super().__init__()
            self.order = order

    class CancelRequested(Message):
        """The user asked to cancel one order."""

        def __init__(self, order_id: int, market: str) -> None:
            super().__init__()
            self.order_id, self.market = order_id, market

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.orders: dict[int, dict[str, Any]] = {}
        self.border_title = "Open orders"

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col, key=col)

    def _cells(self, o: dict[str, Any]) -> list[Any]:
        side = str(o.get("side", ""))
        return [
            str(o["order_id"]),
            o.get("market", ""),
            Text(side, "green" if side == "buy" else "red"),
            (o.get("price") or "market")
            + (f" stop {o['stop_price']}" if o.get("stop_price") and o.get("status") == "pending" else ""),
            o.get("qty", ""),
            o.get("remaining", o.get("qty", "")),
        ]

    def set_orders(self, orders: list[dict[str, Any]]) -> None:
        """Replace with the gateway's snapshot (on each (re)subscribe)."""
        fresh = {int(o["order_id"]): o for o in orders if "order_id" in o}
        for oid in list(self.orders):
            if oid not in fresh:
                self._remove(oid)
        for o in fresh.values():
            self._upsert(o)

    def _upsert(self, o: dict[str, Any]) -> None:
        oid = int(o["order_id"])
        key = str(oid)
        self.orders[oid] = o
        if key in self.rows:
            for col, cell in zip(COLUMNS, self._cells(o), strict=True):
                self.update_cell(key, col, cell)
        else:
            self.add_row(*self._cells(o), key=key)

    def _remove(self, oid: int) -> None:
        self.orders.pop(oid, None)
        if str(oid) in self.rows:
            self.remove_row(str(oid))

    def apply_event(self, ev: dict[str, Any], user: str | None) -> None:
        """An ``order_event`` of this user: accepted, trade or cancelled."""
        kind = ev.get("event")
        if kind == "accepted":
            o = {
                "order_id": ev["order_id"],
                "market": ev.get("market", ""),
                "side": ev.get("side", ""),
                "price": ev.get("price"),
                "qty": ev.get("qty", ""),
                "remaining": ev.get("qty", ""),
                "type": ev.get("order_type", ""),
                "stop_price": ev.get("stop_price"),
                "status": "pending" if ev.get("stop_price") else "open",
            }
            if o["type"] != "market":
                self._upsert(o)
        elif kind == "amended" and ev.get("order_id") in self.orders:
            old = self.orders[ev["order_id"]]
            changed = {"price": ev.get("new_price"), "qty": ev["new_qty"], "remaining": ev["remaining"]}
            self._upsert({**old, **changed, "status": ev.get("status", old.get("status", "open"))})
        elif kind == "triggered" and ev.get("order_id") in self.orders:
            self._upsert({**self.orders[ev["order_id"]], "status": "open"})
        elif kind == "trade":
            for role in ("maker", "taker"):
                oid = ev.get(f"{role}_order_id")
                if oid in self.orders and (user is None or ev.get(f"{role}_user") == user):
                    remaining = str(ev.get(f"{role}_remaining", ""))
                    if _zero(remaining):
                        self._remove(oid)
                    else:
                        self._upsert({**self.orders[oid], "remaining": remaining})
        elif kind == "cancelled":
            self._remove(int(ev.get("order_id", -1)))

    def selected(self) -> dict[str, Any] | None:
        """The order under the cursor."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.orders.get(int(key)) if key is not None else None

    def action_edit_selected(self) -> None:
        """Amend the order under the cursor (in the order entry form)."""
        o = self.selected()
        if o is None:
            self.notify("no open order selected", severity="warning")
            return
        self.post_message(self.EditRequested(dict(o)))

    def action_cancel_selected(self) -> None:
        """Cancel the order under the cursor."""
        o = self.selected()
        if o is None:
            self.notify("no open order selected", severity="warning")
            return
        self.post_message(self.CancelRequested(int(o["order_id"]), str(o.get("market", ""))))
