"""Positions and P&L from a user's fills: pure functions, exact Decimal arithmetic.

Average-cost method, per market:

* a fill that opens or adds to a position moves the average cost to the quantity-weighted
  mean of the old average and the fill price;
* a fill that reduces a position realises ``closed qty x (price - average)`` (long) or
  ``closed qty x (average - price)`` (short); the average of what is left is unchanged;
* a fill larger than the position closes it and opens the rest on the other side at the
  fill price (a flip);
* every fee (quote currency, opening and closing fills alike) is subtracted from realised P&L;
* unrealised P&L is ``qty x (last - average)`` for a long, ``qty x (average - last)`` for a short.

Sums and products are exact. The only divisions (the average shown, and the share of the
cost a partial close removes) are carried at 50 significant digits, far beyond any price
the exchange accepts; closing a whole position is exact.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

_CTX = decimal.Context(prec=50, rounding=decimal.ROUND_HALF_EVEN)
ZERO = Decimal(0)


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else ZERO
    except InvalidOperation:
        return ZERO


@dataclass
class Position:
    """One market's position: signed quantity (short < 0), cost of the open quantity, realised P&L, fees.

    ``cost`` is what the open quantity cost (long) or brought in (short) at its fill prices,
    always >= 0; the average cost is ``cost / |qty|``. Closing a whole position therefore
    realises an exact amount even when the average itself does not terminate.
    """

    market: str
    qty: Decimal = ZERO
    cost: Decimal = ZERO
    realised: Decimal = ZERO
    fees: Decimal = ZERO
    fills: int = 0

    @property
    def avg_cost(self) -> Decimal:
        """Average price of the open quantity (zero when flat)."""
        return _CTX.divide(self.cost, abs(self.qty)) if self.qty else ZERO

    def unrealised(self, last: Decimal | None) -> Decimal | None:
        """P&L of the open quantity at ``last`` (None without a price; zero when flat)."""
        if self.qty == 0:
            return ZERO
        if last is None:
            return None
        value = abs(self.qty) * last - self.cost
        return value if self.qty > 0 else -value

    def apply(self, side: str, qty: Decimal, price: Decimal, fee: Decimal = ZERO) -> None:
        """Apply one fill (``side`` is ``buy`` or ``sell``; ``qty`` positive)."""
        if qty <= 0 or side not in ("buy", "sell"):
            return
        signed = qty if side == "buy" else -qty
        self.fills += 1
        self.fees += fee
        self.realised -= fee
        if self.qty == 0 or (self.qty > 0) == (signed > 0):  # open or add
            self.qty += signed
            self.cost += price * qty
            return
        held = abs(self.qty)
        closed = min(qty, held)
        removed = self.cost if closed == held else _CTX.divide(self.cost * closed, held)
        gain = closed * price - removed
        self.realised += gain if self.qty > 0 else -gain
        self.cost -= removed
        self.qty += signed
        if self.qty == 0:
            self.cost = ZERO
        elif closed < qty:  # flipped: the rest opened on the other side at this price
            self.cost = price * abs(self.qty)


def fill_key(fill: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """What identifies a fill whichever way it arrived (REST or a live trade event)."""
    return (
        str(fill.get("market", "")),
        str(fill.get("trade_id", "")),
        str(fill.get("order_id", "")),
        str(fill.get("side", "")),
    )


def _order(fill: Mapping[str, Any]) -> tuple[int, int]:
    trade = fill.get("trade_id")
    return (int(fill.get("ts") or 0), trade if isinstance(trade, int) else 0)


def positions_from_fills(fills: Iterable[Mapping[str, Any]]) -> dict[str, Position]:
    """Positions per market from fills in any order (applied by time, then trade id; duplicates once)."""
    seen: set[tuple[str, str, str, str]] = set()
    unique = []
    for f in fills:
        key = fill_key(f)
        if key in seen:
            continue
        seen.add(key)
        unique.append(f)
    out: dict[str, Position] = {}
    for f in sorted(unique, key=_order):
        market = str(f.get("market", ""))
        if not market:
            continue
        pos = out.setdefault(market, Position(market))
        pos.apply(str(f.get("side", "")), _dec(f.get("qty")), _dec(f.get("price")), _dec(f.get("fee")))
    return out
