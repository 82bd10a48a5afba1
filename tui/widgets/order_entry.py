"""Order entry: side, market, type, quantity, price, time in force, validated as you type."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

NUMBER = re.compile(r"\d{1,15}(\.\d{1,8})?", re.ASCII)


def _multiple(value: Decimal, step: str) -> bool:
    try:
        s = Decimal(step)
    except InvalidOperation:
        return True
    return s <= 0 or (value % s) == 0


def validate_order(
    side: str, market: str, otype: str, qty: str, price: str, tif: str, spec: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The order body for the gateway, or the reasons it would be refused (tick, lot, limits)."""
    errors: list[str] = []
    qty, price = qty.strip(), price.strip()
    if not market:
        errors.append("choose a market")
    if not qty:
        errors.append("quantity: required")
    elif not NUMBER.fullmatch(qty) or Decimal(qty) == 0:
        errors.append(f"quantity: {qty!r} is not a positive number")
    elif spec:
        q = Decimal(qty)
        if not _multiple(q, spec.get("lot_size", "0")):
            errors.append(f"quantity: not a multiple of the lot size {spec['lot_size']}")
        if q < Decimal(spec.get("min_qty", "0")):
            errors.append(f"quantity: below the minimum {spec['min_qty']}")
        if spec.get("max_qty") and q > Decimal(spec["max_qty"]):
            errors.append(f"quantity: above the maximum {spec['max_qty']}")
    if otype == "limit":
        if not price:
            errors.append("price: required for a limit order")
        elif not NUMBER.fullmatch(price) or Decimal(price) == 0:
            errors.append(f"price: {price!r} is not a positive number")
        elif spec:
            p = Decimal(price)
            if not _multiple(p, spec.get("tick_size", "0")):
                errors.append(f"price: not a multiple of the tick size {spec['tick_size']}")
            if spec.get("max_price") and p > Decimal(spec["max_price"]):
                errors.append(f"price: above the maximum {spec['max_price']}")
    elif price:
        errors.append("price: leave empty for a market order")
    if otype == "market" and tif == "gtc":
        tif = "ioc"  # a market order never rests
    if errors:
        return None, errors
    body: dict[str, Any] = {"market": market, "side": side, "type": otype, "qty": qty, "tif": tif}
    if otype == "limit":
        body["price"] = price
    return body, []


class OrderEntry(VerticalScroll):
    """The order form; ``ctrl+s`` (or Enter in a field) submits a valid order."""

    DEFAULT_CSS = """
    OrderEntry { height: 1fr; padding: 0 1; }
    OrderEntry Horizontal { height: 1; margin-bottom: 1; }
    OrderEntry Select { width: 1fr; margin-right: 2; }
    OrderEntry Input { width: 1fr; margin-right: 2; }
    OrderEntry #entry-status { height: auto; min-height: 1; }
    OrderEntry #entry-status.error { color: $error; }
    OrderEntry #entry-status.ok { color: $success; }
    OrderEntry #entry-result { height: auto; color: $text-muted; }
    """

    class Submit(Message):
        """A valid order the user submitted."""

        def __init__(self, order: dict[str, Any]) -> None:
            super().__init__()
            self.order = order

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.specs: dict[str, dict[str, Any]] = {}
        self.border_title = "Order entry"

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Select(
                [("buy", "buy"), ("sell", "sell")], value="buy", allow_blank=False, id="entry-side", compact=True
            )
            yield Select([], prompt="market", id="entry-market", compact=True)
        with Horizontal():
            yield Select(
                [("limit", "limit"), ("market", "market")],
                value="limit",
                allow_blank=False,
                id="entry-type",
                compact=True,
            )
            yield Select(
                [("gtc", "gtc"), ("ioc", "ioc"), ("fok", "fok")],
                value="gtc",
                allow_blank=False,
                id="entry-tif",
                compact=True,
            )
        with Horizontal():
            yield Input(placeholder="quantity", id="entry-qty", compact=True)
            yield Input(placeholder="price", id="entry-price", compact=True)
        yield Label("", id="entry-status")
        yield Static("", id="entry-result")

    def set_markets(self, markets: list[dict[str, Any]]) -> None:
        """The exchange's markets with their tick and lot sizes."""
        self.specs = {m["symbol"]: m for m in markets if "symbol" in m}
        select = self.query_one("#entry-market", Select)
        current = select.value
        select.set_options([(sym, sym) for sym in sorted(self.specs)])
        if current in self.specs:
            select.value = current
        elif self.specs:
            select.value = sorted(self.specs)[0]

    def choose_market(self, market: str) -> None:
        """Preselect ``market`` if it is an exchange market."""
        if market in self.specs:
            self.query_one("#entry-market", Select).value = market

    def _value(self, wid: str) -> str:
        v = self.query_one(wid, Select).value
        return "" if v is Select.BLANK or v is None else str(v)

    def current(self) -> tuple[dict[str, Any] | None, list[str]]:
        """Validate the form as it stands."""
        market = self._value("#entry-market")
        return validate_order(
            self._value("#entry-side"),
            market,
            self._value("#entry-type"),
            self.query_one("#entry-qty", Input).value,
            self.query_one("#entry-price", Input).value,
            self._value("#entry-tif"),
            self.specs.get(market),
        )

    def revalidate(self) -> list[str]:
        """Show what is wrong (or that the order is ready); returns the errors."""
        status = self.query_one("#entry-status", Label)
        qty = self.query_one("#entry-qty", Input).value
        price = self.query_one("#entry-price", Input).value
        order, errors = self.current()
        self.query_one("#entry-price", Input).disabled = self._value("#entry-type") == "market"
        if not qty and not price:
            status.update("type a quantity" + ("" if self.specs else " (market specs unavailable)"))
            status.set_classes("")
        elif errors:
            status.update("\n".join(errors))
            status.set_classes("error")
        else:
            assert order is not None
            what = f"{order['qty']} @ {order.get('price', 'market')}"
            status.update(f"ready: {order['side']} {order['market']} {what} {order['tif']} (ctrl+s)")
            status.set_classes("ok")
        return errors

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.revalidate()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.revalidate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def submit(self) -> bool:
        """Post a Submit message if the form is valid; otherwise show why not."""
        errors = self.revalidate()
        order, _ = self.current()
        if errors or order is None:
            self.app.bell()
            return False
        self.show_result("sending…")
        self.post_message(self.Submit(order))
        return True

    def show_result(self, text: str, error: bool = False) -> None:
        """The outcome of the last submission."""
        result = self.query_one("#entry-result", Static)
        result.update(text)
        result.styles.color = "red" if error else None
