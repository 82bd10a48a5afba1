"""Exact decimal strings <-> integer multiples of a step (tick size, lot size, asset unit).

Only plain unsigned decimals are numbers here: ASCII digits with an optional fraction
(``"10"``, ``"0.05"``, ``"100.50"``). Signs, exponents, whitespace, NaN, Infinity, ``".5"``,
``"5."`` and non-ASCII digits are not. Nothing here touches float.
"""

from __future__ import annotations

import re
from typing import Final

ASSET_DP: Final = 8
ASSET_SCALE: Final = 10**ASSET_DP
"""Asset balances are integers in 1e-8 units of the asset."""

MAX_DIGITS: Final = 30
"""Digits allowed on each side of the point: far beyond any sane value, and a bound on parsing work."""

_DECIMAL_RE = re.compile(rf"([0-9]{{1,{MAX_DIGITS}}})(?:\.([0-9]{{1,{MAX_DIGITS}}}))?", re.ASCII)


def parse_decimal(text: object) -> tuple[int, int] | None:
    """``"12.50"`` -> ``(1250, 2)``, meaning 1250 / 10**2; None for anything but a plain decimal."""
    if type(text) is not str:
        return None
    m = _DECIMAL_RE.fullmatch(text)
    if m is None:
        return None
    frac = m.group(2) or ""
    return int(m.group(1) + frac), len(frac)


def fixed(value: int, dp: int) -> str:
    """``value / 10**dp`` with exactly ``dp`` decimals: ``fixed(10005, 2) == "100.05"``."""
    sign = "-" if value < 0 else ""
    s = str(abs(value))
    if dp == 0:
        return sign + s
    if len(s) <= dp:
        s = "0" * (dp + 1 - len(s)) + s
    return f"{sign}{s[:-dp]}.{s[-dp:]}"


def fmt_amount(units: int) -> str:
    """Asset units (1e-8) as a decimal string without trailing zeros: ``150000000 -> "1.5"``."""
    if units == 0:
        return "0"
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), ASSET_SCALE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:08d}".rstrip("0")


def show(value: object, limit: int = 32) -> str:
    """A user-supplied value quoted for an error message, truncated so a reason stays short."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    return f"a {type(value).__name__}"


class Step:
    """A positive decimal increment, e.g. ``Step("0.05")``: values are integer multiples of it."""

    __slots__ = ("dp", "num", "text")

    def __init__(self, text: str) -> None:
        parsed = parse_decimal(text)
        if parsed is None or parsed[0] == 0:
            raise ValueError(f"{show(text)} is not a positive plain decimal")
        num, dp = parsed
        while dp and num % 10 == 0:
            num //= 10
            dp -= 1
        self.num = num
        self.dp = dp
        self.text = text

    def count(self, num: int, dp: int) -> int | None:
        """How many steps make ``num / 10**dp``; None if that is not a whole number of steps."""
        k, rem = divmod(num * 10**self.dp, self.num * 10**dp)
        return None if rem else k

    def format(self, k: int) -> str:
        """``k`` steps as a decimal string with the step's decimals (``Step("0.05").format(3) == "0.15"``)."""
        return fixed(k * self.num, self.dp)

    def __repr__(self) -> str:
        return f"Step({self.text!r})"


def asset_units(num: int, dp: int) -> int | None:
    """``num / 10**dp`` in 1e-8 units; None if it has more than 8 significant decimals."""
    if dp <= ASSET_DP:
        return num * 10 ** (ASSET_DP - dp)
    units, rem = divmod(num, 10 ** (dp - ASSET_DP))
    return None if rem else units
