"""Exchange commands and events: the contract between gateway, matching engine and clients.

Commands travel on JetStream ``ex.order.<MKT>`` (one stream, ``EX_ORDERS``, applied by
the matching daemon in stream order, so the outcome is deterministic); every outcome is
an event on JetStream ``ex.event.<MKT>`` (stream ``EX_EVENTS``); its ``event`` field names
the kind. One ``EX_EVENTS`` message is a *record*: a JSON array of one market's consecutive
events (those of one batch of commands), or, as stored before records existed, one event
object; :func:`decode_record` and :func:`split_record` read both. Account commands (``Fund``)
use the pseudo-market ``ACCOUNTS``. Prices and quantities are decimal strings on the wire and
integers (ticks, lots, asset units) in the engine.
Timestamps are integer nanoseconds assigned by the gateway when it accepts the command,
never read from a clock inside the engine (replay must give the same bytes). ``expire_at`` of a
good-till-date order is in the same nanoseconds; the engine's only notion of time is the ``ts``
of the commands it applies (``Time`` carries nothing else).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import msgspec

from stockctl.wire.symbols import RULE, is_symbol

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market", "stop", "stop_limit"]
TimeInForce = Literal["gtc", "ioc", "fok", "gtd"]


class MarketSpec(msgspec.Struct, frozen=True):
    """One market: ``TATA_INR`` trades base ``TATA`` against quote ``INR``."""

    symbol: str
    base: str
    quote: str
    tick_size: str  # price increment, e.g. "0.05"
    lot_size: str  # quantity increment, e.g. "1"
    min_qty: str
    max_qty: str
    max_price: str  # a sanity bound: prices above it are rejected as absurd


DEFAULT_MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec("TATA_INR", "TATA", "INR", "0.05", "1", "1", "100000", "1000000"),
    MarketSpec("JIO_INR", "JIO", "INR", "0.05", "1", "1", "100000", "1000000"),
)


# --- commands (ex.order.<MKT>) ------------------------------------------------------------


class Place(msgspec.Struct, frozen=True, tag="place", tag_field="cmd"):
    """Place an order. ``price`` is required for limit and stop-limit orders, and for stop buys (their
    protection cap); absent for market orders and stop sells. ``stop_price`` only with type stop or
    stop_limit; ``expire_at`` (ns) only with tif gtd; ``display_qty`` (an iceberg) only on a limit
    order that rests (gtc or gtd)."""

    user: str
    client_order_id: str
    market: str
    side: Side
    type: OrderType
    qty: str
    ts: int
    price: str | None = None
    tif: TimeInForce = "gtc"
    post_only: bool = False
    stop_price: str | None = None
    expire_at: int | None = None
    display_qty: str | None = None


class Amend(msgspec.Struct, frozen=True, tag="amend", tag_field="cmd", omit_defaults=True):
    """Change the price and/or quantity (the new total, filled part included) of an open order."""

    user: str
    request_id: str
    market: str
    order_id: int
    ts: int
    price: str | None = None
    qty: str | None = None


class Time(msgspec.Struct, frozen=True, tag="time", tag_field="cmd"):
    """The time is ``ts``: good-till-date orders due by then expire. Sent by the matching daemon
    into the command stream, so a quiet market expires its orders and a replay does the same."""

    ts: int
    user: str = ""
    request_id: str = ""
    market: str = ""


class Cancel(msgspec.Struct, frozen=True, tag="cancel", tag_field="cmd"):
    """Cancel one of the user's open orders, by exchange order id."""

    user: str
    request_id: str
    market: str
    order_id: int
    ts: int


class CancelAll(msgspec.Struct, frozen=True, tag="cancel_all", tag_field="cmd"):
    """Cancel every open order of the user in one market."""

    user: str
    request_id: str
    market: str
    ts: int


class Fund(msgspec.Struct, frozen=True, tag="fund", tag_field="cmd"):
    """Credit a new account with its demo balances (once per user; repeats are no-ops)."""

    user: str
    request_id: str
    amounts: dict[str, str]  # asset -> decimal amount
    ts: int
    market: str = ""


Command = Place | Cancel | CancelAll | Fund | Amend | Time


# --- events (ex.event.<MKT>) --------------------------------------------------------------


class Accepted(msgspec.Struct, frozen=True, tag="accepted", tag_field="event", omit_defaults=True):
    """An order passed validation and funds checks; what it reserved is now held. A stop order is
    then pending (not in the book) until ``Triggered``."""

    seq: int  # per-market event sequence: consecutive, so a gap is visible
    ts: int
    market: str
    user: str
    order_id: int
    client_order_id: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    post_only: bool
    qty: str
    price: str | None
    stop_price: str | None = None
    expire_at: int | None = None
    display_qty: str | None = None


class Amended(msgspec.Struct, frozen=True, tag="amended", tag_field="event"):
    """An open order changed price and/or quantity (same order id); trades may follow at once."""

    seq: int
    ts: int
    market: str
    user: str
    order_id: int
    client_order_id: str
    old_price: str | None
    new_price: str | None
    old_qty: str
    new_qty: str
    remaining: str
    priority: Literal["kept", "lost"]
    # A pending stop stays pending when amended; events stored before this field read as open.
    status: Literal["open", "pending"] = "open"


class Triggered(msgspec.Struct, frozen=True, tag="triggered", tag_field="event"):
    """A pending stop's condition held (``last`` is the trade price that met it): it enters the
    book now as a market order (stop) or a limit order at ``price`` (stop_limit); its trades follow."""

    seq: int
    ts: int
    market: str
    user: str
    order_id: int
    client_order_id: str
    side: Side
    order_type: OrderType
    stop_price: str
    price: str | None
    qty: str
    last: str


class Rejected(msgspec.Struct, frozen=True, tag="rejected", tag_field="event"):
    """A command that changed nothing, with the reason a person can act on."""

    seq: int
    ts: int
    market: str
    user: str
    client_order_id: str  # or the request_id of a cancel
    reason: str
    code: str  # machine-readable: tick_size, lot_size, min_qty, max_qty, price_range, funds, unknown_order, ...


class Trade(msgspec.Struct, frozen=True, tag="trade", tag_field="event"):
    """A fill between a resting (maker) and an incoming (taker) order; both owners are told."""

    seq: int
    ts: int
    market: str
    trade_id: int
    price: str
    qty: str
    taker_side: Side
    maker_user: str
    maker_order_id: int
    maker_client_order_id: str
    maker_remaining: str
    maker_fee: str
    taker_user: str
    taker_order_id: int
    taker_client_order_id: str
    taker_remaining: str
    taker_fee: str


class Cancelled(msgspec.Struct, frozen=True, tag="cancelled", tag_field="event"):
    """An order left the book unfilled (in part): by request, IOC/market remainder, FOK, post-only,
    or self-trade prevention."""

    seq: int
    ts: int
    market: str
    user: str
    order_id: int
    client_order_id: str
    remaining: str
    reason: Literal["user", "ioc", "fok", "post_only", "self_trade", "no_liquidity", "funds", "expired"]
    # funds: a market buy capped by the buyer's quote balance (the book had more)
    # expired: a good-till-date order reached its expire_at


class Funded(msgspec.Struct, frozen=True, tag="funded", tag_field="event"):
    seq: int
    ts: int
    market: str
    user: str
    amounts: dict[str, str]


Event = Accepted | Rejected | Trade | Cancelled | Funded | Amended | Triggered

command_decoder = msgspec.json.Decoder(Command)
event_decoder = msgspec.json.Decoder(Event)
encode = msgspec.json.Encoder().encode

_record_decoder = msgspec.json.Decoder(list[Event] | Event)
_raw_record_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def encode_record(encoded: list[bytes]) -> bytes:
    """An ``EX_EVENTS`` record from already encoded events (one market's, consecutive)."""
    return b"[" + b",".join(encoded) + b"]"


def decode_record(data: bytes) -> list[Event]:
    """The events of one ``EX_EVENTS`` message, oldest first: a record, or one event as stored before records."""
    out = _record_decoder.decode(data)
    return out if isinstance(out, list) else [out]


def split_record(data: bytes) -> list[bytes]:
    """The encoded events of one ``EX_EVENTS`` message, each as :func:`encode` wrote it (not decoded)."""
    if data[:1] == b"[":
        return [bytes(raw) for raw in _raw_record_decoder.decode(data)]
    return [data]


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS_RE = re.compile(r"[0-9]{1,16}", re.ASCII)


def expire_at_ns(value: str | int) -> int:
    """An ``expire_at`` as the edges take it, RFC 3339 (``2030-01-02T15:04:05Z``, an offset is
    required) or integer epoch milliseconds, in the wire's epoch nanoseconds. Raises ValueError
    with what to write instead. Exact: integer arithmetic, no float."""
    if isinstance(value, bool):
        raise ValueError("expire_at must be an RFC 3339 time or epoch milliseconds, not a boolean")
    if isinstance(value, int):
        if not 0 < value < 10**16:
            raise ValueError(f"expire_at {value} is not epoch milliseconds")
        return value * 1_000_000
    if not isinstance(value, str):
        raise ValueError("expire_at must be an RFC 3339 time or epoch milliseconds")
    if _MS_RE.fullmatch(value):
        return expire_at_ns(int(value))
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expire_at {value[:40]!r} is neither an RFC 3339 time (like 2030-01-02T15:04:05Z) nor epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"expire_at {value[:40]!r} has no time zone: add Z or an offset like +05:30")
    delta = when - _EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000


def load_markets(path: str | None) -> tuple[MarketSpec, ...]:
    """Markets from a JSON file (a list of MarketSpec objects), or the defaults."""
    if path is None:
        return DEFAULT_MARKETS
    with open(path, "rb") as fh:
        specs = msgspec.json.decode(fh.read(), type=list[MarketSpec])
    if not specs:
        raise ValueError(f"{path}: no markets")
    for spec in specs:
        if not is_symbol(spec.symbol):  # markets are symbols too: the same rule at every door
            raise ValueError(f"{path}: bad market {spec.symbol[:40]!r}; use it in upper case. {RULE}")
    return tuple(specs)
