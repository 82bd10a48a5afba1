"""What crosses the gateway's sockets: what a client sends, the frames it gets back, and the close codes.

* An order (REST ``POST /api/v1/orders`` body, WebSocket ``place``): :class:`OrderIn`; a change to
  an open order (REST ``PATCH``, WebSocket ``amend``): :class:`AmendIn`. A ``client_order_id`` is
  1-64 of ``A-Z a-z 0-9 _ . -`` (:data:`COID_RE`, always fullmatched).
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

import msgspec

# Close codes: 4401 unauthorized, 4403 forbidden; 1008 policy (rate), 1013 try again later (too slow).
CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_POLICY, CLOSE_SLOW = 4401, 4403, 1008, 1013
CLOSE_TRY_LATER = 1013  # "try again later": a dependency is down, not the client's fault

COID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # .fullmatch only: `$` would let "X\n" through


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


order_in_decoder = msgspec.json.Decoder(OrderIn)


class AmendIn(msgspec.Struct, forbid_unknown_fields=True):
    """A change to an open order (REST PATCH body or WebSocket ``amend``): a new price, qty (the
    new total quantity, filled part included), or both; market optional (it is looked up)."""

    price: str | None = None
    qty: str | None = None
    market: str | None = None


amend_in_decoder = msgspec.json.Decoder(AmendIn)


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


client_msg_decoder = msgspec.json.Decoder(ClientMsg)


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
