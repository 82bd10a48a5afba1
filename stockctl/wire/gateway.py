"""What crosses the gateway's sockets: what a client sends, the frames it gets back, and the close codes.

* An order (REST ``POST /api/v1/orders`` body, WebSocket ``place``): :class:`OrderIn`; a change to
  an open order (REST ``PATCH``, WebSocket ``amend``): :class:`AmendIn`. A ``client_order_id`` is
  1-64 of ``A-Z a-z 0-9 _ . -`` (:data:`COID_RE`, always fullmatched). Prices and quantities
  may be JSON strings or JSON numbers: :class:`NumberTolerant` reads a number from its own
  text, exactly (``0.1`` is ``"0.1"``, never a float), so both spellings are one order.
* A WebSocket client message: :class:`ClientMsg`, ``{"op": ...}``.
* A server frame: ``{"type","channel","data"}`` built by :func:`frame` around a payload that is
  already JSON (spliced in, never re-encoded); ``trades:MKT`` carries :class:`PublicTrade`.
  A client reads any frame as a :class:`ServerFrame`.
* A WebSocket close code tells the client what to do: 4401 log in again, 4403 stop (forbidden),
  1008 slow down (rate), 1013 reconnect later (too slow, or a dependency is down).

Pure: nothing here does I/O. The gateway decodes with these; a client may encode with them.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import msgspec

# Close codes: 4401 unauthorized, 4403 forbidden; 1008 policy (rate), 1013 try again later (too slow).
CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_POLICY, CLOSE_SLOW = 4401, 4403, 1008, 1013
CLOSE_TRY_LATER = 1013  # "try again later": a dependency is down, not the client's fault

COID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # .fullmatch only: `$` would let "X\n" through


SIDES = ("buy", "sell")
ORDER_TYPES = ("limit", "market", "stop", "stop_limit")
TIFS = ("gtc", "ioc", "fok", "gtd")
ORDER_STATUSES = ("pending", "open", "partially_filled", "filled", "cancelled", "partially_filled_cancelled")
"""An order's life: ``pending`` (a stop before its trigger), ``open``, ``partially_filled``
(open, part filled), then ``filled``, ``cancelled`` or ``partially_filled_cancelled`` (also an
expiry, an IOC's rest, a self-trade prevention: ``reason`` says which)."""
OrderStatus = Literal["pending", "open", "partially_filled", "filled", "cancelled", "partially_filled_cancelled"]

NUMERIC_FIELDS = frozenset({"qty", "price", "stop_price", "display_qty", "threshold"})
"""Fields of a client's body or message that are decimal strings, also given as JSON numbers."""

T = TypeVar("T")


def number_text(value: Any) -> Any:
    """A JSON number as the exact decimal text it was written as (``1e3`` -> ``"1000"``); a
    non-number is returned as it is, for the type's own check. ``NaN`` never gets here: it is
    not JSON."""
    if isinstance(value, bool):
        return value  # a bool is an int to Python, but not a number to anyone sending JSON
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        # 1e999999999 spelled out would be a gigabyte: an absurd exponent keeps its short form,
        # which the engine refuses as not a plain decimal.
        return format(value, "f") if -64 < value.adjusted() < 64 else str(value)
    return value


def _as_text(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: number_text(v) if k in NUMERIC_FIELDS else _as_text(v) for k, v in doc.items()}
    return doc


class NumberTolerant(Generic[T]):
    """A decoder of ``type_`` that takes the :data:`NUMERIC_FIELDS` as JSON strings or numbers.

    The body is decoded untyped with numbers as :class:`~decimal.Decimal` (exact: the digits
    sent), those fields become their text, and the result is converted to ``type_`` with its
    usual checks (unknown fields refused, wrong types named by path). ``decode`` has the
    signature of ``msgspec.json.Decoder.decode``, so :func:`~stockctl.wire.strictjson.decode_strict`
    takes it."""

    def __init__(self, type_: type[T]) -> None:
        self.type = type_
        self._raw = msgspec.json.Decoder(float_hook=Decimal)

    def decode(self, raw: str | bytes) -> T:
        try:
            doc = self._raw.decode(raw)
        except RecursionError:  # thousands of nested arrays: msgspec's typed decoder refused them up front
            raise msgspec.DecodeError("JSON is malformed: nested too deeply") from None
        return msgspec.convert(_as_text(doc), self.type)


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    """An order as a client submits it (REST body or WebSocket ``place``)."""

    market: str
    side: str
    qty: str
    price: str | None = None
    type: str | None = None  # default: stop/stop_limit with a stop_price, limit with a price, else market
    tif: str = "gtc"
    post_only: bool = False
    client_order_id: str | None = None
    stop_price: str | None = None
    expire_at: str | int | None = None  # RFC 3339 or epoch milliseconds; with tif gtd (implies it)
    display_qty: str | None = None  # an iceberg: the most the book shows


order_in_decoder = NumberTolerant(OrderIn)


class AmendIn(msgspec.Struct, forbid_unknown_fields=True):
    """A change to an open order (REST PATCH body or WebSocket ``amend``): a new price, qty (the
    new total quantity, filled part included), or both; market optional (it is looked up)."""

    price: str | None = None
    qty: str | None = None
    market: str | None = None


amend_in_decoder = NumberTolerant(AmendIn)


class PublicTrade(msgspec.Struct, tag="trade", tag_field="event"):
    """A trade as everyone may see it (``trades:MKT``): no users, order ids or fees."""

    seq: int
    ts: int
    market: str
    trade_id: int
    price: str
    qty: str
    taker_side: str


public_trade_decoder = msgspec.json.Decoder(PublicTrade)


class ClientMsg(msgspec.Struct, forbid_unknown_fields=True):
    """What a WebSocket client may send."""

    op: str
    channels: list[str] = []
    token: str | None = None
    id: int | str | None = None
    order: OrderIn | None = None
    order_id: int | None = None
    market: str | None = None
    price: str | None = None  # amend
    qty: str | None = None  # amend


client_msg_decoder = NumberTolerant(ClientMsg)


encode = msgspec.json.Encoder().encode


def frame(kind: str, channel: str, data: bytes) -> bytes:
    """A server frame around an already-encoded JSON payload (spliced, not re-encoded)."""
    return b'{"type":"' + kind.encode() + b'","channel":"' + channel.encode() + b'","data":' + data + b"}"


class ServerFrame(msgspec.Struct):
    """A frame from the gateway's WebSocket, as a client reads it: ``type`` always; ``channel`` and
    ``data`` (left raw) on channel frames; ``error``/``detail`` on errors; ``id`` echoes a request's
    ``id``; ``email`` is in ``welcome``."""

    type: str
    channel: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")
    error: str | None = None
    detail: str | None = None
    id: int | str | None = None
    email: str | None = None


server_frame_decoder = msgspec.json.Decoder(ServerFrame)
