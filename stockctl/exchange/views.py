"""The engine's read-only answers: an owner's open order and a market's aggregated depth.

They live apart from :mod:`stockctl.exchange.book` because that module is compiled by mypyc,
and msgspec cannot read the field types of a Struct defined in a compiled module (decoding an
answer into one failed with "Expected `type`"): the SDK and the gateway decode into these.
"""

from __future__ import annotations

import msgspec

from stockctl.wire.exchange import OrderType, Side, TimeInForce


class OrderView(msgspec.Struct, frozen=True):
    """One open (resting) order, as its owner sees it."""

    order_id: int
    client_order_id: str
    market: str
    side: Side
    type: OrderType
    price: str | None
    qty: str
    remaining: str
    tif: TimeInForce
    post_only: bool
    ts: int
    status: str = "open"  # "pending": a stop not triggered yet (not in the book)
    stop_price: str | None = None
    expire_at: int | None = None
    display_qty: str | None = None  # an iceberg: the book shows at most this much of it
    visible: str | None = None  # what the book shows of it now (icebergs only)


class BookView(msgspec.Struct, frozen=True):
    """Aggregated depth, best level first: ``(price, total remaining qty, order count)``."""

    market: str
    bids: list[tuple[str, str, int]]
    asks: list[tuple[str, str, int]]
    last_trade: str | None
    seq: int
