"""The seed systems' wire shapes, built from our exact decimal strings (never through float).

The five seed design documents (``shared/seeds/000..004``) send prices as JSON numbers and
times as RFC 3339 strings. Our prices are decimal strings, so a seed's number is our text
spliced in as a JSON number (or a :class:`~decimal.Decimal` encoded with
``decimal_format="number"``): the digits a seed client reads are exactly ours.

* Seed 000's ``StockPrice`` ``{"symbol","price","timestamp"}`` on the NATS subject
  :data:`STOCK_PRICES_SUBJECT`, published by the processor for every tick.
* Seed 002's WebSocket message has the same three fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

STOCK_PRICES_SUBJECT = "stock_prices"
"""Seed 000's NATS subject: every tick as a ``StockPrice`` JSON object."""

encode_numbers = msgspec.json.Encoder(decimal_format="number").encode
"""JSON with every :class:`~decimal.Decimal` as a number carrying its exact digits."""


_second: list[Any] = [None, ""]  # the last whole second formatted: ticks of one second share it


def rfc3339(ts_ns: int) -> str:
    """``2025-12-30T10:30:45.123Z`` from nanoseconds since the epoch (integer maths only)."""
    secs, ns = divmod(ts_ns, 1_000_000_000)
    if _second[0] != secs:  # strftime costs ~8 us: once a second, not once a tick
        _second[:] = [secs, datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S.")]
    return f"{_second[1]}{ns // 1_000_000:03d}Z"


def stock_price(symbol: str, price: str, ts_ns: int) -> bytes:
    """Seed 000/002's ``{"symbol","price","timestamp"}``, spliced: cheap enough for every tick.

    ``symbol`` holds only ``A-Z 0-9 _ - . /`` (:mod:`stockctl.wire.symbols`) and ``price`` is a plain
    decimal, so neither needs JSON escaping.
    """
    return (
        b'{"symbol":"'
        + symbol.encode()
        + b'","price":'
        + price.encode()
        + b',"timestamp":"'
        + rfc3339(ts_ns).encode()
        + b'"}'
    )


def number(text: str | None) -> Decimal | None:
    """Our decimal text as a Decimal (encoded as a JSON number by :data:`encode_numbers`)."""
    return None if text is None else Decimal(text)
