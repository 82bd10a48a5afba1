"""Exact prices and traded quantities: decimal strings at the edges, integer units inside.

A price unit is 1e-8 of the quote currency; eight decimals cover equities, FX and
crypto quotes alike. A live feed's traded quantity uses the same scale (1e-8 of the
base asset: a satoshi of BTC), which is as fine as Binance and Coinbase quote sizes.
Nothing here touches float.
"""

from __future__ import annotations

import re

PRICE_DP = 8
SCALE = 10**PRICE_DP
MAX_UNITS = 10**15 * SCALE  # a quadrillion per share is absurd; anything above is bad input

_PRICE_RE = re.compile(r"(\d{1,16})(?:\.(\d{1,8}))?", re.ASCII)


class PriceError(ValueError):
    """A price string that is not a positive decimal with at most 8 decimals."""


def to_units(text: str, what: str = "price") -> int:
    """Parse ``"189.25"`` into integer units, rejecting signs, exponents, NaN and excess decimals
    (``what`` names the value in the message: a price, or a ``"quantity"``)."""
    m = _PRICE_RE.fullmatch(text.strip())
    if not m:
        if re.fullmatch(r"\d+\.\d{9,}", text.strip(), re.ASCII):
            raise PriceError(f"too many decimals in {text!r} (at most {PRICE_DP})")
        raise PriceError(f"not a positive decimal {what}: {text!r}")
    whole, frac = m.group(1), (m.group(2) or "")
    units = int(whole) * SCALE + int(frac.ljust(PRICE_DP, "0") or 0)
    if units <= 0:
        raise PriceError(f"{what} must be above zero: {text!r}")
    if units > MAX_UNITS:
        raise PriceError(f"{what} is absurdly large: {text!r}")
    return units


def from_units(units: int, min_dp: int = 2) -> str:
    """Format units exactly, trimming trailing zeros but keeping ``min_dp`` decimals."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), SCALE)
    frac_s = f"{frac:0{PRICE_DP}d}".rstrip("0")
    if len(frac_s) < min_dp:
        frac_s = frac_s.ljust(min_dp, "0")
    return f"{sign}{whole}.{frac_s}" if frac_s else f"{sign}{whole}"


def qty_text(units: int) -> str | None:
    """An exact quantity for the wire (``"0.0012"``, ``"3"``); None for 0, which means none was given."""
    return from_units(units, 0) if units else None


_POW10 = tuple(10**i for i in range(19))


def ratio_str(numerator: int, denominator: int, dp: int = 4) -> str:
    """``numerator / denominator`` (both in units) rounded half-even to ``dp`` decimals.

    Integer arithmetic throughout, so the rounding is exact (one rounding, of the true
    quotient) and costs a divmod: the processor formats three of these per tick.
    """
    if denominator == 0:
        raise ZeroDivisionError("ratio_str: the denominator is 0")
    negative = (numerator < 0) != (denominator < 0)
    den = abs(denominator)
    scale = _POW10[dp] if dp < len(_POW10) else 10**dp
    q, rem = divmod(abs(numerator) * scale, den)
    if 2 * rem > den or (2 * rem == den and q & 1):
        q += 1
    whole, frac = divmod(q, scale)
    sign = "-" if negative and q else ""  # never "-0.00"
    return f"{sign}{whole}.{str(frac).zfill(dp)}" if dp > 0 else f"{sign}{whole}"


def mean_str(total_units: int, count: int, dp: int = 4) -> str:
    """The mean of ``count`` prices summing to ``total_units``, as a decimal string."""
    return ratio_str(total_units, count * SCALE, dp)


def pct_change_str(old_units: int, new_units: int) -> str:
    """Percentage change from old to new, two decimals."""
    return ratio_str((new_units - old_units) * 100, old_units, 2)
