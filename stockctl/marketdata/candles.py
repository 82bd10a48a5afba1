"""OHLCV candles over fixed intervals, on integer price (and quantity) units."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS_NS = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_IV_RE = re.compile(r"(\d{1,4})([smhd])", re.ASCII)


def parse_interval(text: str) -> int:
    """``"1m"`` -> nanoseconds. Raises ValueError naming the accepted forms."""
    m = _IV_RE.fullmatch(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"bad candle interval {text!r}: use a number and s, m, h or d (1s, 5m, 1h)")
    return int(m.group(1)) * _UNITS_NS[m.group(2)]


def bucket_start(ts_ns: int, interval_ns: int) -> int:
    return ts_ns - ts_ns % interval_ns


@dataclass(slots=True)
class CandleState:
    """The candle of one bucket being built."""

    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    count: int
    qty: int = 0
    """Exact traded quantity in 1e-8 units, summed from ticks that carry one (a live feed's)."""

    def add(self, units: int, volume: int, qty: int = 0) -> None:
        if units > self.high:
            self.high = units
        if units < self.low:
            self.low = units
        self.close = units
        self.volume += volume
        self.qty += qty
        self.count += 1


class CandleBuilder:
    """Folds ticks into the current bucket's candle; a tick in a new bucket starts a new one.

    A late tick (older than the current bucket) updates nothing: candles are only ever
    appended, which keeps the stored series monotonic.
    """

    __slots__ = ("current", "interval_ns")

    def __init__(self, interval_ns: int, current: CandleState | None = None) -> None:
        self.interval_ns = interval_ns
        self.current = current

    def add(self, ts_ns: int, units: int, volume: int, qty: int = 0) -> CandleState | None:
        """Fold a tick in; return the candle it changed (None for a late tick)."""
        start = bucket_start(ts_ns, self.interval_ns)
        cur = self.current
        if cur is None or start > cur.start:
            self.current = CandleState(start, units, units, units, units, volume, 1, qty)
            return self.current
        if start < cur.start:
            return None
        cur.add(units, volume, qty)
        return cur
