"""Order entry: side, market, type, quantity, price, time in force, validated as you type.

Types are limit, market, stop (a market order once the last trade reaches the stop price; a stop
buy's price is its cap) and stop_limit (a limit order at the price once triggered); tif gtd takes
an expiry (``+30s``, ``+5m``, epoch ms or RFC 3339); a display qty makes a limit order an iceberg.
``OpenOrders``' ``e`` loads an open order here to amend it: ctrl+s then sends the new price and
quantity instead of a new order, and ``escape`` goes back to placing orders.
"""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from stockctl.exchange.validation import (
    LIMIT_TYPES,
    MarketRules,
    display_problem,
    edge_decimal,
    expiry_ms,
    order_problems,
    rules_for,
    takes_price,
)

# The form's short wording of a market rule's problem, by its code (the rule is validation's).
_SAYS = {
    "lot_size": "not a multiple of the lot size {s.lot_size}",
    "min_qty": "below the minimum {s.min_qty}",
    "max_qty": "above the maximum {s.max_qty}",
    "tick_size": "not a multiple of the tick size {s.tick_size}",
    "price_range": "above the maximum {s.max_price}",
    "display_lot_size": "not a multiple of the lot size {s.lot_size}",
    "display_above_qty": "above the quantity",
}


def _value_error(name: str, text: str, rules: MarketRules | None, is_qty: bool) -> tuple[int | None, str | None]:
    """A typed quantity (``is_qty``) or price through the edges' shape, then the market's rules
    if known: its value in lots or ticks (None if not known) and the form's message, or None."""
    if not edge_decimal(text):
        return None, f"{name}: {text!r} is not a positive number"
    if rules is None:
        return None, None
    value, problem = rules.qty(text) if is_qty else rules.price(text)
    if problem is None:
        return value, None
    says = _SAYS.get(problem[0])
    return None, f"{name}: " + (says.format(s=rules.spec) if says else problem[1])


def validate_order(
    side: str,
    market: str,
    otype: str,
    qty: str,
    price: str,
    tif: str,
    spec: dict[str, Any] | None,
    stop: str = "",
    expire: str = "",
    display: str = "",
) -> tuple[dict[str, Any] | None, list[str]]:
    """The order body for the gateway, or the reasons it would be refused (the exchange's rules,
    ``stockctl.exchange.validation``, one reason per field)."""
    errors: list[str] = []
    qty, price, stop, expire, display = qty.strip(), price.strip(), stop.strip(), expire.strip(), display.strip()
    rules = rules_for(spec)
    if not market:
        errors.append("choose a market")
    lots = None
    if not qty:
        errors.append("quantity: required")
    else:
        lots, bad = _value_error("quantity", qty, rules, True)
        if bad:
            errors.append(bad)
    shape = order_problems(None, side, otype, tif, False, bool(price), bool(stop), expire or None, None, every=True)
    codes = {code for code, _ in shape}
    priced = takes_price(otype, side == "buy")
    if "price_required" in codes:
        what = "the cap of a stop buy" if otype == "stop" else f"a {otype.replace('_', '-')} order"
        errors.append(f"price: required for {what}")
    elif "price_not_allowed" in codes:
        errors.append(f"price: leave empty for a {'market order' if otype == 'market' else 'stop sell'}")
    elif price:
        _, bad = _value_error("price", price, rules, False)
        if bad:
            errors.append(bad)
    if "stop_price_required" in codes:
        errors.append("stop price: required for a stop order")
    elif "stop_price_not_allowed" in codes:
        errors.append("stop price: only for stop and stop_limit orders")
    elif stop:
        _, bad = _value_error("stop price", stop, rules, False)
        if bad:
            errors.append(bad)
    if "bad_tif" in codes:
        errors.append("gtd: a market order never rests")
    elif "bad_expire_at" in codes:
        errors.append(
            "expiry: only with tif gtd"
            if expire
            else "expiry: required for gtd (+30s, +5m, epoch ms or 2030-01-02T15:04:05Z)"
        )
    if display:
        if display_problem(otype, tif) is not None:
            errors.append("display qty: only for a limit gtc or gtd order (an iceberg)")
        elif not edge_decimal(display):
            errors.append(f"display qty: {display!r} is not a positive number")
        elif rules is not None:
            _, wrong = rules.display(display, otype, tif, lots, qty)
            if wrong is not None:
                errors.append("display qty: " + _SAYS[wrong[0]].format(s=rules.spec))
    if otype not in LIMIT_TYPES and tif == "gtc":
        tif = "ioc"  # a market order never rests
    if errors:
        return None, errors
    body: dict[str, Any] = {"market": market, "side": side, "type": otype, "qty": qty, "tif": tif}
    if priced:
        body["price"] = price
    if stop:
        body["stop_price"] = stop
    if expire:
        try:
            body["expire_at"] = expiry_ms(expire, time.time_ns() // 1_000_000)
        except ValueError as exc:
            return None, [f"expiry: {exc}"]
    if display:
        body["display_qty"] = display
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

    class Amend(Message):
        """A new price and/or quantity for an open order (only what changed)."""

        def __init__(self, order_id: int, market: str, price: str | None, qty: str | None) -> None:
            super().__init__()
            self.order_id, self.market, self.price, self.qty = order_id, market, price, qty

    BINDINGS = [("escape", "stop_amending", "Stop amending")]

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.specs: dict[str, dict[str, Any]] = {}
        self.border_title = "Order entry"
        self.amending: dict[str, Any] | None = None  # the open order being edited

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Select(
                [("buy", "buy"), ("sell", "sell")], value="buy", allow_blank=False, id="entry-side", compact=True
            )
            yield Select([], prompt="market", id="entry-market", compact=True)
        with Horizontal():
            yield Select(
                [("limit", "limit"), ("market", "market"), ("stop", "stop"), ("stop_limit", "stop_limit")],
                value="limit",
                allow_blank=False,
                id="entry-type",
                compact=True,
            )
            yield Select(
                [("gtc", "gtc"), ("ioc", "ioc"), ("fok", "fok"), ("gtd", "gtd")],
                value="gtc",
                allow_blank=False,
                id="entry-tif",
                compact=True,
            )
        with Horizontal():
            yield Input(placeholder="quantity", id="entry-qty", compact=True)
            yield Input(placeholder="price", id="entry-price", compact=True)
        with Horizontal():
            yield Input(placeholder="stop price", id="entry-stop", compact=True)
            yield Input(placeholder="expiry (gtd)", id="entry-expire", compact=True)
            yield Input(placeholder="display qty", id="entry-display", compact=True)
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
            self.query_one("#entry-stop", Input).value,
            self.query_one("#entry-expire", Input).value,
            self.query_one("#entry-display", Input).value,
        )

    def revalidate(self) -> list[str]:
        """Show what is wrong (or that the order is ready); returns the errors."""
        status = self.query_one("#entry-status", Label)
        qty = self.query_one("#entry-qty", Input).value
        price = self.query_one("#entry-price", Input).value
        if self.amending is not None:
            return self._revalidate_amend(status, qty.strip(), price.strip())
        order, errors = self.current()
        otype, side = self._value("#entry-type"), self._value("#entry-side")
        self.query_one("#entry-price", Input).disabled = otype == "market" or (otype == "stop" and side == "sell")
        self.query_one("#entry-stop", Input).disabled = otype not in ("stop", "stop_limit")
        self.query_one("#entry-expire", Input).disabled = self._value("#entry-tif") != "gtd"
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

    # --- amending an open order -----------------------------------------------------------

    def edit(self, order: dict[str, Any]) -> None:
        """Load an open order to amend: its quantity and price in the fields, ctrl+s sends."""
        self.amending = order
        self.query_one("#entry-qty", Input).value = str(order.get("qty", ""))
        self.query_one("#entry-price", Input).value = str(order.get("price") or "")
        self.border_title = f"Amend order {order['order_id']} (esc: back to new orders)"
        self.revalidate()

    def action_stop_amending(self) -> None:
        if self.amending is not None:
            self.amending = None
            self.border_title = "Order entry"
            self.revalidate()

    def _amend_change(self, qty: str, price: str) -> tuple[dict[str, str | None], list[str]]:
        o = self.amending or {}
        rules = rules_for(self.specs.get(str(o.get("market", ""))))
        errors: list[str] = []
        _, bad = _value_error("quantity", qty, rules, True)
        if bad:
            errors.append(bad)
        if price:
            _, bad = _value_error("price", price, rules, False)
            if bad:
                errors.append(bad)
        elif o.get("price"):
            errors.append("price: required (the order has one)")
        change = {
            "qty": qty if not errors and qty != str(o.get("qty")) else None,
            "price": price if not errors and price and price != str(o.get("price")) else None,
        }
        if not errors and change["qty"] is None and change["price"] is None:
            errors.append("nothing changed: edit the quantity or the price")
        return change, errors

    def _revalidate_amend(self, status: Label, qty: str, price: str) -> list[str]:
        _, errors = self._amend_change(qty, price)
        if errors:
            status.update("\n".join(errors))
            status.set_classes("error")
        else:
            o = self.amending or {}
            status.update(f"ready: amend order {o.get('order_id')} to {qty} @ {price or 'market'} (ctrl+s)")
            status.set_classes("ok")
        return errors

    def submit(self) -> bool:
        """Post a Submit (or, amending, an Amend) message if the form is valid; otherwise show why not."""
        errors = self.revalidate()
        if self.amending is not None:
            change, _ = self._amend_change(
                self.query_one("#entry-qty", Input).value.strip(), self.query_one("#entry-price", Input).value.strip()
            )
            if errors:
                self.app.bell()
                return False
            o = self.amending
            self.show_result("sending…")
            self.post_message(self.Amend(int(o["order_id"]), str(o.get("market", "")), change["price"], change["qty"]))
            self.action_stop_amending()
            return True
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
