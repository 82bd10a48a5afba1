"""What the gateway's REST API answers, as types: the shapes its OpenAPI spec documents.

* Timestamps: every ``ts``-like field (integer nanoseconds since the epoch, kept as it was
  for the clients that read it) comes with ``<field>_ms`` (integer milliseconds: exact in
  JavaScript) and an RFC 3339 string with all nine digits (:data:`TIME_FIELDS` names them;
  ``ts`` gets ``ts_ms`` and ``time``). :func:`with_times` adds them to a JSON document.
* Numbers: prices, quantities, fees and balances are decimal strings; only counts, ids and
  timestamps are JSON integers.
* The structs below are the responses, one per route: :func:`response_schemas` turns them
  into OpenAPI components. They describe the fields a client may rely on; a response may
  carry more (``additionalProperties`` is not closed), so a new field is not a break.

Pure: nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec

from stockctl.wire.exchange import MarketSpec
from stockctl.wire.gateway import OrderStatus

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market", "stop", "stop_limit"]
Tif = Literal["gtc", "ioc", "fok", "gtd"]

TIME_FIELDS: dict[str, tuple[str, str]] = {
    "ts": ("ts_ms", "time"),
    "start": ("start_ms", "start_time"),
    "created": ("created_ms", "created_time"),
    "fired_ts": ("fired_ms", "fired_time"),
    "expire_at": ("expire_at_ms", "expire_at_time"),
}
"""An integer-nanosecond field -> its milliseconds field and its RFC 3339 field."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def rfc3339(ns: int) -> str:
    """``ns`` since the epoch as RFC 3339 in UTC with nine fractional digits (lossless)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return (_EPOCH + dt.timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def with_times(doc: Any) -> Any:
    """``doc`` with ``<field>_ms`` and the RFC 3339 field beside every integer :data:`TIME_FIELDS`
    field, at any depth (a new document; ``doc`` is not changed)."""
    if isinstance(doc, list):
        return [with_times(v) for v in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        out[key] = with_times(value) if isinstance(value, dict | list) else value
        names = TIME_FIELDS.get(key)
        if names is not None and type(value) is int:
            out[names[0]] = value // 1_000_000
            out[names[1]] = rfc3339(value)
    return out


def point_row(price: str, ts: int, seq: int) -> list[Any]:
    """A history point: ``[price, ts_ns, seq, ts_ms, time]`` (the first three as before)."""
    return [price, ts, seq, ts // 1_000_000, rfc3339(ts)]


# --- response shapes (documentation: the OpenAPI components) ------------------------------


class Error(msgspec.Struct):
    """Every 4xx and 5xx answer."""

    error: str
    detail: str


class Info(msgspec.Struct):
    ws_url: str
    ws_path: str
    candle_intervals: list[str]
    version: str


class Quote(msgspec.Struct):
    symbol: str
    price: str
    ts: int
    ts_ms: int
    time: str
    seq: int
    open: str
    high: str
    low: str
    change: str
    change_pct: str
    volume: int = 0
    sma_fast: str | None = None
    sma_slow: str | None = None
    signal: Literal["BUY", "SELL"] | None = None


class PricePoint(msgspec.Struct, array_like=True):
    """``[price, ts_ns, seq, ts_ms, time]``."""

    price: str
    ts: int
    seq: int
    ts_ms: int
    time: str


class Candle(msgspec.Struct):
    symbol: str
    interval: str
    start: int
    start_ms: int
    start_time: str
    open: str
    high: str
    low: str
    close: str
    volume: int
    count: int


class Signal(msgspec.Struct):
    symbol: str
    side: Literal["BUY", "SELL"]
    price: str
    ts: int
    ts_ms: int
    time: str
    seq: int
    sma_fast: str
    sma_slow: str


class Fill(msgspec.Struct):
    """One fill of yours: your side of a trade."""

    ts: int
    ts_ms: int
    time: str
    market: str
    side: Side
    qty: str
    price: str
    fee: str
    liquidity: Literal["maker", "taker"]
    order_id: int
    client_order_id: str
    trade_id: int


class FillSummary(msgspec.Struct):
    qty: str
    price: str
    fee: str


class OrderState(msgspec.Struct):
    """One order of yours, open or finished (``GET /api/v1/orders/{id}``, the order list)."""

    order_id: int
    client_order_id: str
    market: str
    side: Side
    type: OrderType
    tif: Tif
    price: str | None
    qty: str
    remaining: str
    filled_qty: str
    avg_price: str | None
    status: OrderStatus
    ts: int
    ts_ms: int
    time: str
    post_only: bool = False
    stop_price: str | None = None
    expire_at: int | None = None
    display_qty: str | None = None
    reason: str | None = None
    cancelled_qty: str | None = None  # a cancelled order: what the cancel took off (its `remaining` is 0)


class OrdersWithHistory(msgspec.Struct):
    """``all=true``: your open orders and your order events (accepted, amended, cancelled...)."""

    open: list[OrderState]
    history: list[dict[str, Any]]


class OrderResult(msgspec.Struct):
    """A placed (201) or cancelled (200) order: its status and fills, from the stored events."""

    events: list[dict[str, Any]]
    order_id: int | None = None
    client_order_id: str | None = None
    status: OrderStatus | None = None
    filled: list[FillSummary] = []


class AmendResult(msgspec.Struct):
    order_id: int
    client_order_id: str
    status: Literal["open", "filled", "cancelled"]
    price: str | None
    qty: str
    remaining: str
    priority: Literal["kept", "lost"]
    filled: list[FillSummary]
    events: list[dict[str, Any]]


class CancelAllResult(msgspec.Struct):
    cancelled: int
    events: list[dict[str, Any]]


class Balance(msgspec.Struct):
    available: str
    reserved: str


class Book(msgspec.Struct):
    """Depth: ``[price, qty, orders]`` per level, best first; ``seq`` of the depth feed."""

    market: str
    seq: int
    bids: list[tuple[str, str, int]]
    asks: list[tuple[str, str, int]]
    last: str | None = None


class PublicTrade(msgspec.Struct):
    event: Literal["trade"]
    seq: int
    ts: int
    ts_ms: int
    time: str
    market: str
    trade_id: int
    price: str
    qty: str
    taker_side: Side


class Alert(msgspec.Struct):
    id: int
    symbol: str
    condition: Literal["above", "below", "cross-sma"]
    created: int
    created_ms: int
    created_time: str
    status: Literal["active", "fired"]
    threshold: str | None = None
    side: Side | None = None
    fired_ts: int | None = None
    fired_price: str | None = None
    signal: Literal["BUY", "SELL"] | None = None


class AlertAdded(msgspec.Struct):
    alert: Alert
    last_price: str | None
    note: str | None = None


class AlertList(msgspec.Struct):
    active: list[Alert]
    fired: list[Alert]


RESPONSE_TYPES: tuple[Any, ...] = (
    Error,
    Info,
    Quote,
    PricePoint,
    Candle,
    Signal,
    MarketSpec,
    Fill,
    OrderState,
    OrdersWithHistory,
    OrderResult,
    AmendResult,
    CancelAllResult,
    Balance,
    Book,
    PublicTrade,
    Alert,
    AlertAdded,
    AlertList,
)


def response_schemas() -> dict[str, Any]:
    """The OpenAPI components (``#/components/schemas/<Name>``) of :data:`RESPONSE_TYPES`."""
    _, components = msgspec.json.schema_components(RESPONSE_TYPES, ref_template="#/components/schemas/{name}")
    return components
