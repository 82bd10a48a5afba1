"""Simple moving averages in O(1) per tick, and crossover signals, on integer price units."""

from __future__ import annotations

from collections import deque
from typing import Literal

Side = Literal["BUY", "SELL"]


class SlidingSma:
    """Mean of the last ``window`` prices, kept as an exact integer running sum."""

    __slots__ = ("_values", "total", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._values: deque[int] = deque()
        self.total = 0

    def push(self, units: int) -> None:
        self._values.append(units)
        self.total += units
        if len(self._values) > self.window:
            self.total -= self._values.popleft()

    @property
    def ready(self) -> bool:
        return len(self._values) == self.window


class SmaCrossover:
    """Fast and slow SMAs; reports BUY when fast crosses above slow, SELL when below.

    The comparison ``fast_sum/fast_n`` vs ``slow_sum/slow_n`` is done by cross
    multiplication, so it is exact: no rounding can invent or hide a crossover.
    """

    __slots__ = ("_relation", "fast", "slow")

    def __init__(self, fast: int, slow: int) -> None:
        if fast >= slow:
            raise ValueError("fast window must be shorter than slow window")
        self.fast = SlidingSma(fast)
        self.slow = SlidingSma(slow)
        self._relation = 0  # sign of (fast - slow) at the last tick where both were ready

    @property
    def relation(self) -> int:
        """-1, 0 or 1: the side fast was on at the last tick where the two differed (0: not yet)."""
        return self._relation

    def seed_relation(self, relation: int) -> None:
        """Restore the stored side when replayed history could not tell it (every window equal)."""
        if self._relation == 0:
            self._relation = (relation > 0) - (relation < 0)

    def push(self, units: int) -> Side | None:
        """Add a price; return the signal this tick produces, if any."""
        self.fast.push(units)
        self.slow.push(units)
        if not self.slow.ready:
            return None
        diff = self.fast.total * self.slow.window - self.slow.total * self.fast.window
        relation = (diff > 0) - (diff < 0)
        previous, signal = self._relation, None
        if relation != 0:
            # Equality is not a cross: wait until fast is strictly on the other side.
            if previous < 0 < relation:
                signal = "BUY"
            elif previous > 0 > relation:
                signal = "SELL"
            self._relation = relation
        return signal
