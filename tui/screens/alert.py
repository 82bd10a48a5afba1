"""The price-alert form: a small modal for the selected symbol, prefilled with its last price.

It only validates (with the gateway's own rules, as you type) and hands the request back;
the app sends it from a worker and shows the answer as a notification.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from stockctl.alerts.rules import AlertIn, describe, parse_request
from stockctl.errors import UsageError

CONDITIONS = [
    ("above (at or above a price)", "above"),
    ("below (at or below a price)", "below"),
    ("SMA crossover", "cross-sma"),
]
SIDES = [("buy or sell crossover", ""), ("buy crossover only", "buy"), ("sell crossover only", "sell")]


def alert_request(symbol: str, condition: str, price: str, side: str) -> tuple[dict[str, Any] | None, str]:
    """The request body for the gateway and a line describing it, or None and the reason it would be refused."""
    cross = condition == "cross-sma"
    try:
        spec = parse_request(
            AlertIn(symbol, condition, None if cross else price.strip(), (side or None) if cross else None)
        )
    except UsageError as exc:
        return None, str(exc)
    body = {"symbol": spec.symbol, "condition": spec.condition, "threshold": spec.threshold, "side": spec.side}
    return {k: v for k, v in body.items() if v is not None}, f"alert when {describe(spec)}"


class AlertScreen(ModalScreen[dict[str, Any] | None]):
    """Add a price alert for one symbol; dismissed with the request body, or None when cancelled."""

    AUTO_FOCUS = "#alert-price"
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "add", "Add alert", priority=True)]

    DEFAULT_CSS = """
    AlertScreen { align: center middle; }
    AlertScreen #alert-box { width: 56; max-width: 100%; height: auto; border: round $accent; padding: 1 2;
                             background: $surface; }
    AlertScreen Select, AlertScreen Input { margin-bottom: 1; }
    AlertScreen #alert-side { display: none; }
    AlertScreen.cross #alert-side { display: block; }
    AlertScreen.cross #alert-price { display: none; }
    AlertScreen Horizontal { height: auto; }
    AlertScreen Button { margin-right: 2; }
    AlertScreen #alert-status { height: auto; margin-bottom: 1; }
    AlertScreen #alert-status.error { color: $error; }
    """

    def __init__(self, symbol: str, last_price: str | None) -> None:
        super().__init__()
        self.symbol = symbol
        self.last_price = last_price or ""

    def compose(self) -> ComposeResult:
        with Vertical(id="alert-box"):
            last = f" · last {self.last_price}" if self.last_price else ""
            yield Static(f"[b]Price alert[/b] · {self.symbol}{last}", id="alert-title")
            yield Select(CONDITIONS, value="above", allow_blank=False, id="alert-condition")
            yield Input(self.last_price, placeholder="price, e.g. 200.5", id="alert-price")
            yield Select(SIDES, value="", allow_blank=False, id="alert-side")
            yield Label("", id="alert-status")
            with Horizontal():
                yield Button("Add alert", id="alert-add", variant="primary")
                yield Button("Cancel", id="alert-cancel")

    def on_mount(self) -> None:
        self._check()

    def _values(self) -> tuple[str, str, str]:
        condition = str(self.query_one("#alert-condition", Select).value)
        price = self.query_one("#alert-price", Input).value
        side = self.query_one("#alert-side", Select).value
        return condition, price, str(side) if isinstance(side, str) else ""

    def _check(self) -> dict[str, Any] | None:
        condition, price, side = self._values()
        self.set_class(condition == "cross-sma", "cross")
        body, text = alert_request(self.symbol, condition, price, side)
        status = self.query_one("#alert-status", Label)
        status.update(text)
        status.set_class(body is None, "error")
        return body

    def on_select_changed(self, _: Select.Changed) -> None:
        self._check()

    def on_input_changed(self, _: Input.Changed) -> None:
        self._check()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.action_add()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "alert-add":
            self.action_add()
        else:
            self.action_cancel()

    def action_add(self) -> None:
        """Add the alert (when the form is valid)."""
        body = self._check()
        if body is not None:
            self.dismiss(body)

    def action_cancel(self) -> None:
        """Close the form without adding an alert."""
        self.dismiss(None)
