"""Typed messages: workers post them, the app routes them to widgets.

High-rate messages (quotes, book ladders) say ``can_replace`` for a newer message about
the same symbol, so a backlog in the message queue collapses to the latest state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from stockctl.alerts.rules import Alert
from stockctl.wire.marketdata import Candle, Quote, Signal


class QuoteArrived(Message):
    """The latest quote of one symbol (replaces an older pending one of the same symbol)."""

    def __init__(self, quote: Quote) -> None:
        super().__init__()
        self.quote = quote

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, QuoteArrived) and message.quote.symbol == self.quote.symbol


class SignalsArrived(Message):
    """SMA crossover signals (a snapshot of recent ones, or one new signal)."""

    def __init__(self, signals: list[Signal]) -> None:
        super().__init__()
        self.signals = signals


class BookChanged(Message):
    """The depth ladder of a market after a snapshot or delta (replaces older pending ones)."""

    def __init__(self, market: str, bids: list[list[str]], asks: list[list[str]], last: str | None, seq: int) -> None:
        super().__init__()
        self.market, self.bids, self.asks, self.last, self.seq = market, bids, asks, last, seq

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, BookChanged) and message.market == self.market


class TradesArrived(Message):
    """Public trades of a market: the recent ones (snapshot) or a new one."""

    def __init__(self, market: str, trades: list[dict[str, Any]], snapshot: bool) -> None:
        super().__init__()
        self.market, self.trades, self.snapshot = market, trades, snapshot


class OpenOrdersSnapshot(Message):
    """The user's open orders as the gateway sees them on (re)subscribe."""

    def __init__(self, orders: list[dict[str, Any]]) -> None:
        super().__init__()
        self.orders = orders


class OrderEventArrived(Message):
    """One exchange event about the user's own orders (accepted, trade, cancelled...)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class ConnectionChanged(Message):
    """The live feed's state: ``connecting``, ``live``, ``disconnected``, ``frozen``."""

    def __init__(self, state: str, detail: str = "") -> None:
        super().__init__()
        self.state, self.detail = state, detail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ConnectionChanged)


class FeedProblem(Message):
    """A readable problem from the feed or a request (never a traceback)."""

    def __init__(self, text: str, severity: str = "warning") -> None:
        super().__init__()
        self.text, self.severity = text, severity


@dataclass
class Initial:
    """What the app loads over REST before it subscribes."""

    quotes: list[Quote]
    history: dict[str, list[str]]
    markets: list[dict[str, Any]] = field(default_factory=list)
    markets_error: str = ""


class InitialLoaded(Message):
    """The REST data the board and forms start from."""

    def __init__(self, initial: Initial) -> None:
        super().__init__()
        self.initial = initial


class ChartLoaded(Message):
    """What the chart of one symbol in one mode shows, oldest first: (ts, price) ticks or
    candles, and the server's recent signals of the symbol (its markers)."""

    def __init__(
        self,
        symbol: str,
        mode: str,
        points: list[tuple[int, str]],
        candles: list[Candle] | None = None,
        signals: list[Signal] | None = None,
    ) -> None:
        super().__init__()
        self.symbol, self.mode, self.points = symbol, mode, points
        self.candles, self.signals = candles or [], signals or []


class BalancesLoaded(Message):
    """Available and reserved amounts per asset."""

    def __init__(self, balances: dict[str, dict[str, str]]) -> None:
        super().__init__()
        self.balances = balances


class FillsLoaded(Message):
    """The user's recent fills, oldest first."""

    def __init__(self, fills: list[dict[str, Any]]) -> None:
        super().__init__()
        self.fills = fills


class AuthState(Message):
    """Whether the app has usable credentials (else the login screen is shown)."""

    def __init__(self, ok: bool, detail: str = "") -> None:
        super().__init__()
        self.ok, self.detail = ok, detail


class AlertsSnapshot(Message):
    """The user's alerts as the gateway lists them on (re)subscribe: active ones and recently fired ones."""

    def __init__(self, active: list[Alert], fired: list[Alert]) -> None:
        super().__init__()
        self.active, self.fired = active, fired


class AlertFired(Message):
    """One of the user's price alerts fired."""

    def __init__(self, alert: Alert) -> None:
        super().__init__()
        self.alert = alert


class AlertAddResult(Message):
    """What the gateway answered to adding an alert: a readable line, and whether it was refused."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__()
        self.text, self.error = text, error


class OrderResult(Message):
    """What the gateway answered to placing, amending or cancelling an order: a readable line,
    whether it was refused, and whether the order entry form shows it too (cancels are not sent from it).
    """

    def __init__(self, text: str, error: bool = False, in_form: bool = True) -> None:
        super().__init__()
        self.text, self.error, self.in_form = text, error, in_form
