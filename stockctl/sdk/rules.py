"""A market's order rules as Decimal arithmetic: round a price to the tick, a quantity to the lot.

:class:`MarketRules` wraps one :class:`~stockctl.wire.exchange.MarketSpec` (``GET /api/v1/markets``).
Rounding is exact (Decimal, never float) and leans the safe way by default: a buy's price is
rounded down and a sell's up, so a rounded order never pays more or sells for less than the
price it was computed from; a quantity is rounded down to whole lots, so it never spends more
than was meant. :meth:`MarketRules.text` writes a Decimal the way the wire wants it (plain
digits, no exponent).

Pure: nothing here does I/O.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal

from stockctl.errors import UsageError
from stockctl.wire.exchange import MarketSpec


def text(value: Decimal | int | str) -> str:
    """A number as the wire writes it: plain decimal digits, never ``1E+2``."""
    return format(Decimal(value), "f")


class MarketRules:
    """Tick, lot and size limits of one market, with rounding helpers."""

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.market = spec.symbol
        self.tick = Decimal(spec.tick_size)
        self.lot = Decimal(spec.lot_size)
        self.min_qty = Decimal(spec.min_qty)
        self.max_qty = Decimal(spec.max_qty)
        self.max_price = Decimal(spec.max_price)

    @staticmethod
    def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
        units = (value / step).to_integral_value(rounding=rounding)
        return (units * step).quantize(step)

    def price(self, value: Decimal | int | str, side: Literal["buy", "sell"] | None = None) -> Decimal:
        """``value`` on the tick grid: a buy rounds down, a sell up, no side to the nearest tick.

        Raises UsageError for a price that rounds to zero or below, or above the market's bound.
        """
        mode = {"buy": ROUND_FLOOR, "sell": ROUND_CEILING, None: ROUND_HALF_EVEN}[side]
        out = self._to_step(Decimal(value), self.tick, mode)
        if out <= 0:
            raise UsageError(f"price {value} rounds to {out} in {self.market}", f"prices are multiples of {self.tick}")
        if out > self.max_price:
            raise UsageError(f"price {out} is above {self.market}'s bound {self.max_price}")
        return out

    def qty(self, value: Decimal | int | str) -> Decimal:
        """``value`` rounded down to whole lots and capped at the largest order size.

        Raises UsageError when that is below the smallest order size.
        """
        out = min(self._to_step(Decimal(value), self.lot, ROUND_FLOOR), self.max_qty)
        if out < self.min_qty:
            raise UsageError(
                f"quantity {value} is below {self.market}'s minimum {self.min_qty} (lot {self.lot})",
                f"order at least {self.min_qty}",
            )
        return out

    def ticks(self, n: int) -> Decimal:
        """``n`` ticks as a price difference (``rules.ticks(2)`` is 0.10 for a 0.05 tick)."""
        return self.tick * n

    text = staticmethod(text)

    def __repr__(self) -> str:
        return f"MarketRules({self.market}, tick={self.tick}, lot={self.lot})"
