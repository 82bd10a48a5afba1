"""Independent reference arithmetic for the unit tests (exact, via Fraction; no Decimal, no float)."""

from __future__ import annotations

from fractions import Fraction

SCALE = 10**8  # one price unit is 1e-8, spelled out here rather than imported


def round_half_even(value: Fraction, dp: int) -> str:
    """``value`` rounded half-to-even to ``dp`` decimals, sign kept (as in ``-0.00``)."""
    sign = "-" if value < 0 else ""
    scaled = abs(value) * 10**dp
    q, r = divmod(scaled.numerator, scaled.denominator)
    if 2 * r > scaled.denominator or (2 * r == scaled.denominator and q % 2 == 1):
        q += 1
    digits = str(q).rjust(dp + 1, "0")
    return f"{sign}{digits[:-dp]}.{digits[-dp:]}" if dp else f"{sign}{digits}"


def units_of(text: str) -> int:
    """A decimal string like ``"12.5"`` to integer units, by string surgery."""
    whole, _, frac = text.partition(".")
    assert len(frac) <= 8
    return int(whole) * SCALE + int((frac + "0" * 8)[:8])


def naive_mean(values: list[int]) -> Fraction:
    return Fraction(sum(values), len(values))
