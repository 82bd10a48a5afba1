"""Typed wire messages shared by every part (JSON on the wire, so ``nats sub`` is readable).

Prices travel as decimal strings; timestamps are integer nanoseconds since the epoch.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Tick(msgspec.Struct, frozen=True, omit_defaults=True):
    """One trade price from the publisher (or the exchange) on ``md.tick.<SYM>``."""

    symbol: str
    price: str
    ts: int
    seq: int
    """Per-symbol sequence number: consecutive, so a gap is visible."""
    volume: int = 0
    origin: str = "sim"
    """Where the tick came from: ``sim``, ``csv:<file>:<line>``, an exchange market, or a live
    feed's trade (``binance:trade:<id>``, ``binance:aggTrade:<id>``, ``coinbase:match:<id>``)."""
    qty: str | None = None
    """A live feed's exact traded quantity (crypto trades in fractions, at most 8 decimals); its
    ``volume`` is 0, and quotes, candles and the history store count ``qty`` instead."""


class Quote(msgspec.Struct, frozen=True, omit_defaults=True):
    """The processor's enriched view of a symbol after one tick, on ``md.quote.<SYM>``."""

    symbol: str
    price: str
    ts: int
    seq: int
    open: str
    high: str
    low: str
    change: str
    change_pct: str
    volume: int = 0
    """Units traded today (UTC): the ticks' ``volume``, plus the whole units of ``qty``."""
    sma_fast: str | None = None
    sma_slow: str | None = None
    signal: Literal["BUY", "SELL"] | None = None
    """Side of the most recent crossover signal, if any."""
    qty: str | None = None
    """The exact quantity traded today of a symbol whose ticks carry ``qty`` (a live feed's)."""


class Signal(msgspec.Struct, frozen=True):
    """An SMA crossover on ``md.signal.<SYM>``: BUY when fast crosses above slow."""

    symbol: str
    side: Literal["BUY", "SELL"]
    price: str
    ts: int
    seq: int
    sma_fast: str
    sma_slow: str


class Candle(msgspec.Struct, frozen=True, omit_defaults=True):
    """OHLCV over one interval bucket starting at ``start`` (ns)."""

    symbol: str
    interval: str
    start: int
    open: str
    high: str
    low: str
    close: str
    volume: int
    """Units traded: the ticks' ``volume``, plus the whole units of ``qty``."""
    count: int
    qty: str | None = None
    """The exact quantity traded, for a symbol whose ticks carry ``qty`` (a live feed's)."""


class PricePoint(msgspec.Struct, frozen=True, array_like=True):
    """One history entry, stored compactly as ``[price, ts, seq]``."""

    price: str
    ts: int
    seq: int


encode = msgspec.json.Encoder().encode
tick_decoder = msgspec.json.Decoder(Tick)
quote_decoder = msgspec.json.Decoder(Quote)
signal_decoder = msgspec.json.Decoder(Signal)
candle_decoder = msgspec.json.Decoder(Candle)
point_decoder = msgspec.json.Decoder(PricePoint)
