"""The engine tests' own arithmetic (``tests/support/engine.py``), checked by hand."""

from __future__ import annotations

from tests.support.arithmetic import SCALE
from tests.support.engine import fee, notional


def test_notional_and_fee_arithmetic_by_hand() -> None:
    # 10 shares at 100.05 = 1000.5 INR; 10 bps of that = 1.0005 INR.
    assert notional("100.05", 10) == 1000 * SCALE + SCALE // 2
    assert fee(notional("100.05", 10), 10) == 100_050_000
    # 1 share at 0.05 = 0.05 INR = 5,000,000 units; 10 bps = 5,000 units exactly.
    assert fee(notional("0.05", 1), 10) == 5_000


def test_fee_rounds_down_to_the_unit() -> None:
    assert fee(9_999, 10) == 9
    assert fee(999, 10) == 0
