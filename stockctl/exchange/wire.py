"""Exchange commands and events: the contract between gateway, matching engine and clients.

Commands travel on JetStream ``ex.order.<MKT>`` (one stream, ``EX_ORDERS``, applied by
the matching daemon in stream order, so the outcome is deterministic); every outcome is
an event on JetStream ``ex.event.<MKT>`` (stream ``EX_EVENTS``); its ``event`` field names
the kind. Account commands (``Fund``) use the pseudo-market ``ACCOUNTS``. Prices and quantities
are decimal strings on the wire and integers (ticks, lots, asset units) in the engine.
Timestamps are integer nanoseconds assigned by the gateway when it accepts the command,
never read from a clock inside the engine (replay must give the same bytes).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from stockctl.symbols import RULE, is_symbol

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["gtc", "ioc", "fok"]


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
    """Place an order. ``price`` is required for limit orders and absent for market orders."""

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


Command = Place | Cancel | CancelAll | Fund


# --- events (ex.event.<MKT>) --------------------------------------------------------------


class Accepted(msgspec.Struct, frozen=True, tag="accepted", tag_field="event"):
    """An order passed validation and funds checks; what it reserved is now held."""

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
    reason: Literal["user", "ioc", "fok", "post_only", "self_trade", "no_liquidity", "funds"]
    # funds: a market buy capped by the buyer's quote balance (the book had more)


class Funded(msgspec.Struct, frozen=True, tag="funded", tag_field="event"):
    seq: int
    ts: int
    market: str
    user: str
    amounts: dict[str, str]


Event = Accepted | Rejected | Trade | Cancelled | Funded

command_decoder = msgspec.json.Decoder(Command)
event_decoder = msgspec.json.Decoder(Event)
encode = msgspec.json.Encoder().encode


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
