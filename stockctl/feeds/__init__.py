"""Live exchange feeds: what every adapter shares (specs, normalising, gap tracking, health).

A feed is one exchange connection carrying trades of some symbols; ``--feed
binance:BTCUSDT,ETHUSDT`` is one spec. Adapters (:mod:`.binance`, :mod:`.coinbase`) turn the
exchange's frames into :class:`Trade` values; :mod:`.runner` keeps the connection (reconnects
with jittered backoff, a silence watchdog) and the ``feeds`` daemon publishes each trade as a
:class:`stockctl.wire.Tick` on ``md.tick.<SYM>``, so the processor path is the simulator's.

Symbols keep the exchange's spelling, upper-cased: Binance ``btcusdt`` is ``BTCUSDT``,
Coinbase ``BTC-USD`` is ``BTC-USD``. Prices and quantities stay exact (decimal strings, at
most 8 decimals, never a float); timestamps are the exchange's trade times in integer nanoseconds.

Gaps are found by the exchange's own ids, which are consecutive per symbol (Binance trade id
``t`` or aggregate id ``a``; Coinbase ``trade_id``): an id more than one past the last is a gap
(counted, logged, shown by ``stockctl status``), an id at or below the last is a duplicate
(dropped: a reconnect replays Coinbase's ``last_match``).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from stockctl.marketdata.money import PriceError, from_units, to_units

log = logging.getLogger("stockctl.feeds")


class MalformedFrame(ValueError):
    """A frame the adapter cannot read: counted and skipped, the connection stays."""


class FeedRejected(Exception):
    """The exchange refused us (e.g. a Coinbase ``error`` message): reconnect after a backoff."""


# --- normalising --------------------------------------------------------------------------


@dataclass(frozen=True)
class Trade:
    """One exchange trade, normalised: exact price and quantity strings, time in ns."""

    symbol: str
    price: str
    qty: str
    ts: int
    trade_id: int
    origin: str
    """``<exchange>:<kind>:<id>``: which exchange trade a tick came from, and where to resume."""


_DECIMAL = re.compile(r"(\d{1,20})(?:\.(\d{1,30}))?", re.ASCII)


def exact_price(text: Any) -> str:
    """An exchange price string as our canonical exact decimal (``"400.23000000"`` -> ``"400.23"``)."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
        raise MalformedFrame(f"price {str(text)[:40]!r} is not a decimal string")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")  # trailing zeros past 8 decimals are exact; other digits are not
    try:
        return from_units(to_units(f"{whole}.{frac}" if frac else whole))
    except PriceError as exc:
        raise MalformedFrame(str(exc)) from None


def exact_qty(text: Any) -> str:
    """A quantity string, exact, trailing fraction zeros trimmed (``"0.00700000"`` -> ``"0.007"``):
    above zero, at most 8 decimals (the 1e-8 units the history store and candles sum)."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
        raise MalformedFrame(f"quantity {str(text)[:40]!r} is not a decimal string")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    try:
        return from_units(to_units(f"{whole}.{frac}" if frac else whole, "quantity"), 0)
    except PriceError as exc:
        raise MalformedFrame(str(exc)) from None


_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)


def iso_to_ns(text: Any) -> int:
    """``2014-11-07T08:19:27.028459Z`` as integer ns since the epoch, exactly (no float)."""
    import calendar

    m = _ISO.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise MalformedFrame(f"time {str(text)[:40]!r} is not ISO 8601 UTC")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        raise MalformedFrame(f"time {text[:40]!r} is not a date") from None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        raise MalformedFrame(f"time {text[:40]!r} is not a date")
    return secs * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0"))


def int_field(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedFrame(f"field {key!r} is not a non-negative integer")
    return value


# --- gaps and health ----------------------------------------------------------------------


@dataclass
class FeedHealth:
    """What ``stockctl status`` shows per feed; the daemon writes :meth:`snapshot` every second."""

    name: str
    symbols: tuple[str, ...]
    connected: bool = False
    connects: int = 0
    last_message: float | None = None  # wall time of the last frame of any kind
    last_trade: float | None = None
    frames: int = 0
    trades: int = 0
    gaps: int = 0
    missed: int = 0
    duplicates: int = 0
    malformed: int = 0
    last_error: str = ""
    last_gap: str = ""
    last_ids: dict[str, int] = field(default_factory=dict)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def seen(self) -> None:
        self.frames += 1
        self.last_message = time.time()

    def check_id(self, key: str, trade_id: int) -> bool:
        """Record an exchange id; False for a duplicate (drop it). A jump is a gap, reported."""
        last = self.last_ids.get(key)
        if last is not None and trade_id <= last:
            self.duplicates += 1
            return False
        if last is not None and trade_id > last + 1:
            self.gap(key, last, trade_id)
        self.last_ids[key] = trade_id
        return True

    def gap(self, key: str, last: int, now: int) -> None:
        missed = now - last - 1
        self.gaps += 1
        self.missed += missed
        self.last_gap = f"{key}: ids {last + 1}..{now - 1} missing ({missed})"
        log.warning("%s gap: %s", self.name, self.last_gap)

    def snapshot(self) -> dict[str, Any]:
        return {
            "symbols": list(self.symbols),
            "connected": self.connected,
            "reconnects": self.reconnects,
            "last_message": self.last_message,
            "last_trade": self.last_trade,
            "frames": self.frames,
            "trades": self.trades,
            "gaps": self.gaps,
            "missed": self.missed,
            "duplicates": self.duplicates,
            "malformed": self.malformed,
            "last_error": self.last_error,
            "last_gap": self.last_gap,
        }
