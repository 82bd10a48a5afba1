"""Where the app's data comes from: the gateway (REST + WebSocket), or a frozen data set.

The app only talks to a source; :class:`GatewaySource` is the real one, :class:`FrozenSource`
feeds fixed data without any network (snapshot tests, demos).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from stockctl.alerts.rules import Alert, AlertAdded, AlertIn, AlertList, parse_request
from stockctl.settings import Settings
from stockctl.wire.marketdata import Candle, PricePoint, Quote, Signal

FrameHandler = Callable[[str, str, bytes], None]
StateHandler = Callable[[str, str], None]
ErrorHandler = Callable[[str], None]

MAX_BACKOFF_S = 2.0


class Api(Protocol):
    """The REST calls the app makes (a subset of :class:`stockctl.client.api.GatewayClient`)."""

    def quotes(self) -> list[Quote]: ...
    def history(self, symbol: str, limit: int) -> list[PricePoint]: ...
    def candles(self, symbol: str, interval: str, limit: int) -> list[Candle]: ...
    def signals(self, symbol: str, limit: int) -> list[Signal]: ...
    def markets(self) -> list[dict[str, Any]]: ...
    def balances(self) -> dict[str, dict[str, str]]: ...
    def fills(self, limit: int = 100) -> list[dict[str, Any]]: ...
    def place(self, order: dict[str, Any]) -> dict[str, Any]: ...
    def cancel(self, order_id: int, market: str | None = None) -> dict[str, Any]: ...
    def amend(
        self, order_id: int, price: str | None = None, qty: str | None = None, market: str | None = None
    ) -> dict[str, Any]: ...
    def add_alert(
        self, symbol: str, condition: str, threshold: str | None = None, side: str | None = None
    ) -> AlertAdded: ...
    def close(self) -> None: ...


class Source(Protocol):
    """A data source: REST-like calls, a live feed, and a clock."""

    live: bool

    def check_login(self) -> None: ...
    def api(self) -> Api: ...
    def now_ns(self) -> int: ...
    async def feed(
        self, groups: list[list[str]], on_frame: FrameHandler, on_state: StateHandler, on_error: ErrorHandler
    ) -> None: ...


class GatewaySource:
    """The gateway of a running instance, with the stored login (kept renewed) or an explicit token."""

    live = True

    def __init__(self, settings: Settings, token: str | None = None) -> None:
        from stockctl.client.credentials import LiveSession

        self.settings = settings
        self.session = LiveSession(settings, token)

    def access_token(self) -> str:
        return self.session.current().access_token

    def check_login(self) -> None:
        """Raise NotLoggedIn (or NotRunningError) when there is no usable token."""
        self.access_token()

    def api(self) -> Api:
        from stockctl.client.api import GatewayClient

        return GatewayClient(self.settings, token=self.access_token())

    def now_ns(self) -> int:
        return time.time_ns()

    async def feed(
        self, groups: list[list[str]], on_frame: FrameHandler, on_state: StateHandler, on_error: ErrorHandler
    ) -> None:
        """Stay subscribed to ``groups`` (one subscribe request each) forever, reconnecting.

        The token is renewed on the open socket before it expires (:func:`stockctl.sdk.stream.live_frames`,
        the SDK's socket loop, which the CLI's streams use too). A group the gateway refuses (say, the exchange is
        down) is reported through ``on_error`` and the others keep flowing. Raises NotLoggedIn
        when the login is gone.
        """
        from stockctl.sdk.stream import live_frames

        frames = live_frames(
            self.settings, groups, self.session, on_state=on_state, max_attempts=None, max_backoff_s=MAX_BACKOFF_S
        )
        async for f in frames:
            if f.type == "welcome":
                on_state("live", f.email or "")
            elif f.type == "error":
                where = ", ".join(groups[f.id - 1]) if isinstance(f.id, int) and 0 < f.id <= len(groups) else ""
                on_error(f"{where}: {f.detail or f.error}" if where else str(f.detail or f.error))
            elif f.channel is not None and len(f.data):
                on_frame(f.type, f.channel, bytes(f.data))


# --- frozen data ------------------------------------------------------------------------------


@dataclass
class FrozenData:
    """A fixed data set: everything a screen shows, at a fixed clock."""

    now_ns: int
    quotes: list[Quote]
    history: dict[str, list[PricePoint]]
    signals: dict[str, list[Signal]] = field(default_factory=dict)
    candles: dict[str, list[Candle]] = field(default_factory=dict)
    """Each symbol's candles of every interval, oldest first."""
    markets: list[dict[str, Any]] = field(default_factory=list)
    books: dict[str, dict[str, Any]] = field(default_factory=dict)
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[str, dict[str, str]] = field(default_factory=dict)
    placed: list[dict[str, Any]] = field(default_factory=list)
    amended: list[dict[str, Any]] = field(default_factory=list)
    """Amends sent through the app (recorded, never sent)."""
    alerts: list[Alert] = field(default_factory=list)
    """Alerts added through the app (recorded, never sent)."""


class FrozenApi:
    """REST calls answered from a :class:`FrozenData` (orders are recorded, never sent)."""

    def __init__(self, data: FrozenData) -> None:
        self.data = data

    def quotes(self) -> list[Quote]:
        return list(self.data.quotes)

    def history(self, symbol: str, limit: int) -> list[PricePoint]:
        return self.data.history.get(symbol, [])[-limit:]

    def candles(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        return [c for c in self.data.candles.get(symbol, []) if c.interval == interval][-limit:]

    def signals(self, symbol: str, limit: int) -> list[Signal]:
        return self.data.signals.get(symbol, [])[-limit:]

    def markets(self) -> list[dict[str, Any]]:
        return list(self.data.markets)

    def balances(self) -> dict[str, dict[str, str]]:
        return dict(self.data.balances)

    def fills(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.data.fills[-limit:]

    def place(self, order: dict[str, Any]) -> dict[str, Any]:
        self.data.placed.append(order)
        return {"order_id": len(self.data.placed), "status": "open", "filled": [], "events": []}

    def cancel(self, order_id: int, market: str | None = None) -> dict[str, Any]:
        return {"events": []}

    def amend(
        self, order_id: int, price: str | None = None, qty: str | None = None, market: str | None = None
    ) -> dict[str, Any]:
        self.data.amended.append({"order_id": order_id, "price": price, "qty": qty, "market": market})
        return {"order_id": order_id, "status": "open", "price": price, "qty": qty, "filled": [], "events": []}

    def add_alert(
        self, symbol: str, condition: str, threshold: str | None = None, side: str | None = None
    ) -> AlertAdded:
        spec = parse_request(AlertIn(symbol, condition, threshold, side))
        last = next((q.price for q in self.data.quotes if q.symbol == spec.symbol), "0")
        alert = Alert(
            id=len(self.data.alerts) + 1,
            user="demo",
            symbol=spec.symbol,
            condition=spec.condition,
            created=self.data.now_ns,
            threshold=spec.threshold,
            side=spec.side,
        )
        self.data.alerts.append(alert)
        return AlertAdded(alert, last)

    def close(self) -> None:
        pass


class FrozenSource:
    """No network: the data set's snapshots are fed once through the same path as live frames."""

    live = False

    def __init__(self, data: FrozenData) -> None:
        self.data = data

    def check_login(self) -> None:
        return None

    def api(self) -> Api:
        return FrozenApi(self.data)

    def now_ns(self) -> int:
        return self.data.now_ns

    async def feed(
        self, groups: list[list[str]], on_frame: FrameHandler, on_state: StateHandler, on_error: ErrorHandler
    ) -> None:
        enc = msgspec.json.encode
        wanted = {c for g in groups for c in g}
        for ch in sorted(wanted):
            kind, _, name = ch.partition(":")
            if kind == "signals" and name in self.data.signals:
                on_frame("snapshot", ch, enc(self.data.signals[name]))
            elif kind == "book" and name in self.data.books:
                on_frame("snapshot", ch, enc(self.data.books[name]))
            elif kind == "trades" and name in self.data.trades:
                on_frame("snapshot", ch, enc(self.data.trades[name]))
            elif kind == "orders":
                on_frame("snapshot", ch, enc(self.data.orders))
            elif kind == "alerts":
                on_frame("snapshot", ch, enc(AlertList(list(self.data.alerts), [])))
        on_state("frozen", "fixed data set")
