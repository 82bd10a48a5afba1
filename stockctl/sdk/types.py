"""The SDK's types: every WebSocket frame and every REST answer, as msgspec structs.

What the library already defines is reused, not copied: quotes, signals and candles
(:mod:`stockctl.wire.marketdata`), markets and the engine's events (:mod:`stockctl.wire.exchange`),
public trades and the loose :class:`~stockctl.wire.gateway.ServerFrame` (:mod:`stockctl.wire.gateway`),
open orders (:class:`stockctl.exchange.book.OrderView`) and alerts (:mod:`stockctl.alerts.rules`).
Defined here are the shapes only a client sees: a trade as one side sees it (:class:`OwnTrade`,
the other side's user, order ids and fee removed), fills, balances, order and amend answers,
the book (REST and the ``book:MKT`` channel), and the frames of the socket itself.

Numbers stay decimal strings as they travel (``Decimal(q.price)`` is exact); timestamps are
integer nanoseconds. Unknown fields are ignored, so a newer gateway's extra fields do not break
an older SDK. :func:`decode_frame` reads any frame of the gateway's socket as a :data:`Frame`.

Pure: nothing here does I/O.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from stockctl.alerts.rules import Alert, AlertList
from stockctl.exchange.book import OrderView
from stockctl.wire.exchange import Accepted, Amended, Cancelled, Funded, MarketSpec, Rejected, Triggered
from stockctl.wire.gateway import PublicTrade
from stockctl.wire.marketdata import Candle, Quote, Signal
from stockctl.wire.rest import Fill, FillSummary  # the REST answers' own structs, as the OpenAPI spec has them

Side = Literal["buy", "sell"]


class OwnTrade(msgspec.Struct, frozen=True, tag="trade", tag_field="event"):
    """A trade on your ``orders`` channel (or in an order's ``events``): only your side keeps its
    user, order ids, remaining quantity and fee; the other side's are absent (None)."""

    seq: int
    ts: int
    market: str
    trade_id: int
    price: str
    qty: str
    taker_side: Side
    maker_user: str | None = None
    maker_order_id: int | None = None
    maker_client_order_id: str | None = None
    maker_remaining: str | None = None
    maker_fee: str | None = None
    taker_user: str | None = None
    taker_order_id: int | None = None
    taker_client_order_id: str | None = None
    taker_remaining: str | None = None
    taker_fee: str | None = None

    @property
    def liquidity(self) -> Literal["maker", "taker"]:
        """Whether your order was the taker (it crossed) or the maker (it rested)."""
        return "taker" if self.taker_order_id is not None else "maker"

    @property
    def side(self) -> Side:
        """Your side: the taker's side if you took, the opposite if you made."""
        if self.liquidity == "taker":
            return self.taker_side
        return "sell" if self.taker_side == "buy" else "buy"

    @property
    def order_id(self) -> int:
        oid = self.taker_order_id if self.liquidity == "taker" else self.maker_order_id
        assert oid is not None, "an own trade names at least one of your orders"
        return oid

    @property
    def fee(self) -> Decimal:
        return Decimal((self.taker_fee if self.liquidity == "taker" else self.maker_fee) or "0")

    @property
    def remaining(self) -> Decimal:
        """What is left of your order after this fill."""
        return Decimal((self.taker_remaining if self.liquidity == "taker" else self.maker_remaining) or "0")


OrderEvent = Accepted | Rejected | OwnTrade | Cancelled | Funded | Amended | Triggered
"""One event of your own orders (the ``orders`` channel, an order's ``events``); ``event`` names it."""


# --- REST answers ----------------------------------------------------------------------------


class Balance(msgspec.Struct, frozen=True):
    """One asset of ``GET /api/v1/balances``: what you can spend and what open orders hold."""

    available: str
    reserved: str


class OrderResult(msgspec.Struct, frozen=True):
    """The answer to a place (``POST /api/v1/orders``) or a cancel (``DELETE``): the stored events,
    and for a place the order's id, status (``open``, ``pending``, ``filled``, ``partially_filled``,
    ``cancelled``, ``partially_filled_cancelled``) and fills."""

    events: list[OrderEvent]
    order_id: int | None = None
    client_order_id: str | None = None
    status: str | None = None
    filled: list[FillSummary] = []

    @property
    def filled_qty(self) -> Decimal:
        return sum((Decimal(f.qty) for f in self.filled), Decimal(0))


class AmendResult(msgspec.Struct, frozen=True):
    """The answer to an amend (``PATCH /api/v1/orders/{id}``); ``priority`` is ``kept`` or ``lost``."""

    order_id: int
    client_order_id: str
    status: str
    price: str | None
    qty: str
    remaining: str
    priority: str
    filled: list[FillSummary] = []
    events: list[OrderEvent] = []


class CancelAllResult(msgspec.Struct, frozen=True):
    """The answer to ``DELETE /api/v1/orders``: how many orders were cancelled, and the events."""

    cancelled: int
    events: list[OrderEvent] = []


class OrderState(msgspec.Struct, frozen=True):
    """One order of yours, open or finished (``GET /api/v1/orders/{id}``): its status, how much
    is filled and at what average price, and what remains."""

    order_id: int
    market: str
    side: Side
    status: str
    qty: str
    remaining: str
    filled_qty: str
    avg_price: str | None = None
    price: str | None = None
    client_order_id: str | None = None
    type: str | None = None
    tif: str | None = None
    ts: int | None = None
    stop_price: str | None = None
    reason: str | None = None
    cancelled_qty: str | None = None  # a cancelled order: what the cancel took off (``remaining`` is 0)


class BookLevel(msgspec.Struct, frozen=True, array_like=True):
    """``[price, qty, orders]`` (a delta's levels have no order count; qty ``"0"``: gone)."""

    price: str
    qty: str
    orders: int | None = None


class BookUpdate(msgspec.Struct, frozen=True):
    """The book of a market: the REST ladder, a ``book:MKT`` snapshot, or a feed message. A feed
    message is a ``delta`` (changed levels only) or a ``snapshot`` (matching restarted: its
    ``seq`` starts again); ``seq`` is consecutive per market, so a gap is visible."""

    market: str
    seq: int
    bids: list[BookLevel]
    asks: list[BookLevel]
    last: str | None = None
    type: Literal["snapshot", "delta"] = "snapshot"


class Info(msgspec.Struct, frozen=True):
    """``GET /api/v1/info`` (no token needed): where the gateway's WebSocket is."""

    ws_url: str
    candle_intervals: list[str] = []
    version: str = ""


# --- WebSocket frames ------------------------------------------------------------------------


class Welcome(msgspec.Struct, frozen=True, tag="welcome", tag_field="type"):
    """The answer to authentication, and to each ``{"op":"auth"}`` that renews the token."""

    email: str
    expires: int | None = None
    id: int | str | None = None


class Subscribed(msgspec.Struct, frozen=True, tag="subscribed", tag_field="type"):
    channels: list[str]
    id: int | str | None = None


class Unsubscribed(msgspec.Struct, frozen=True, tag="unsubscribed", tag_field="type"):
    channels: list[str]
    id: int | str | None = None


class Pong(msgspec.Struct, frozen=True, tag="pong", tag_field="type"):
    id: int | str | None = None


class ErrorFrame(msgspec.Struct, frozen=True, tag="error", tag_field="type"):
    """A refused message (bad channel, rate limit, ...); ``id`` echoes the request's; the socket stays."""

    error: str = ""
    detail: str = ""
    id: int | str | None = None


class OrderResultFrame(msgspec.Struct, frozen=True, tag="order_result", tag_field="type"):
    """The answer to a ``place`` or ``cancel`` op: ``code`` is the REST status (201, 200, 422, ...)."""

    code: int
    events: list[OrderEvent] = []
    order_id: int | None = None
    client_order_id: str | None = None
    status: str | None = None
    filled: list[FillSummary] = []
    error: str | None = None
    detail: str | None = None
    id: int | str | None = None


class AmendResultFrame(msgspec.Struct, frozen=True, tag="amend_result", tag_field="type"):
    """The answer to an ``amend`` op (``code`` 200, 404 or 422; the fields of :class:`AmendResult`)."""

    code: int
    order_id: int | None = None
    status: str | None = None
    price: str | None = None
    qty: str | None = None
    remaining: str | None = None
    priority: str | None = None
    filled: list[FillSummary] = []
    events: list[OrderEvent] = []
    error: str | None = None
    detail: str | None = None
    id: int | str | None = None


class SnapshotFrame(msgspec.Struct, frozen=True, tag="snapshot", tag_field="type"):
    """A channel's state when subscribed; ``data``'s type depends on the channel (:func:`snapshot_type`)."""

    channel: str
    data: msgspec.Raw


class QuoteFrame(msgspec.Struct, frozen=True, tag="quote", tag_field="type"):
    channel: str
    data: Quote


class SignalFrame(msgspec.Struct, frozen=True, tag="signal", tag_field="type"):
    channel: str
    data: Signal


class CandleFrame(msgspec.Struct, frozen=True, tag="candle", tag_field="type"):
    channel: str
    data: Candle


class BookFrame(msgspec.Struct, frozen=True, tag="book", tag_field="type"):
    channel: str
    data: BookUpdate


class TradeFrame(msgspec.Struct, frozen=True, tag="trade", tag_field="type"):
    channel: str
    data: PublicTrade


class OrderEventFrame(msgspec.Struct, frozen=True, tag="order_event", tag_field="type"):
    channel: str
    data: OrderEvent


class AlertFrame(msgspec.Struct, frozen=True, tag="alert", tag_field="type"):
    channel: str
    data: Alert


Frame = (
    Welcome
    | Subscribed
    | Unsubscribed
    | Pong
    | ErrorFrame
    | OrderResultFrame
    | AmendResultFrame
    | SnapshotFrame
    | QuoteFrame
    | SignalFrame
    | CandleFrame
    | BookFrame
    | TradeFrame
    | OrderEventFrame
    | AlertFrame
)
"""Any frame of the gateway's WebSocket, told apart by its ``type``."""

_frame_decoder = msgspec.json.Decoder(Frame)


def decode_frame(raw: bytes | str) -> Frame:
    """One frame of the gateway's socket, typed; raises msgspec.ValidationError for an unknown shape."""
    return _frame_decoder.decode(raw)


def snapshot_type(channel: str) -> Any:
    """The type of a ``snapshot`` frame's data on ``channel`` (``quotes:AAPL`` -> :class:`Quote`)."""
    kind = channel.split(":", 1)[0]
    return {
        "quotes": Quote,
        "signals": list[Signal],
        "candles": list[Candle],
        "book": BookUpdate,
        "trades": list[PublicTrade],
        "orders": list[OrderView],
        "alerts": AlertList,
    }[kind]


__all__ = [
    "Accepted",
    "Alert",
    "AlertFrame",
    "AlertList",
    "AmendResult",
    "AmendResultFrame",
    "Amended",
    "Balance",
    "BookFrame",
    "BookLevel",
    "BookUpdate",
    "CancelAllResult",
    "Cancelled",
    "Candle",
    "CandleFrame",
    "ErrorFrame",
    "Fill",
    "FillSummary",
    "Frame",
    "Funded",
    "Info",
    "MarketSpec",
    "OrderEvent",
    "OrderEventFrame",
    "OrderResult",
    "OrderResultFrame",
    "OrderState",
    "OrderView",
    "OwnTrade",
    "Pong",
    "PublicTrade",
    "Quote",
    "QuoteFrame",
    "Rejected",
    "Signal",
    "SignalFrame",
    "SnapshotFrame",
    "Subscribed",
    "TradeFrame",
    "Triggered",
    "Unsubscribed",
    "Welcome",
    "decode_frame",
    "snapshot_type",
]
