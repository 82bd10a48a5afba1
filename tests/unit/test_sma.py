"""stockctl.sma: exact O(1) sliding means and crossover signals."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockctl.marketdata.sma import SlidingSma, SmaCrossover
from tests.support.arithmetic import naive_mean


def push_all(sma: SlidingSma, values: list[int]) -> None:
    for v in values:
        sma.push(v)


def signals_of(fast: int, slow: int, prices: list[int]) -> list[str | None]:
    xo = SmaCrossover(fast, slow)
    return [xo.push(p) for p in prices]


def naive_signals(fast: int, slow: int, prices: list[int]) -> list[str | None]:
    """Recompute both means from scratch at every tick; a cross needs a strict change of side."""
    out: list[str | None] = []
    side = 0  # last strict side of fast vs slow, 0 before any
    for i in range(len(prices)):
        if i + 1 < slow:
            out.append(None)
            continue
        f = naive_mean(prices[i + 1 - fast : i + 1])
        s = naive_mean(prices[i + 1 - slow : i + 1])
        now = 1 if f > s else -1 if f < s else 0
        signal = None
        if now == 1 and side == -1:
            signal = "BUY"
        elif now == -1 and side == 1:
            signal = "SELL"
        if now != 0:
            side = now
        out.append(signal)
    return out


# --- SlidingSma ---------------------------------------------------------------------------


@pytest.mark.parametrize("window", [0, -1])
def test_sliding_sma_rejects_empty_window(window: int) -> None:
    with pytest.raises(ValueError):
        SlidingSma(window)


def test_sliding_sma_is_ready_only_once_the_window_is_full() -> None:
    sma = SlidingSma(3)
    readiness = []

    for v in (5, 6, 7, 8):
        sma.push(v)
        readiness.append(sma.ready)

    assert readiness == [False, False, True, True]


def test_sliding_sma_total_is_the_sum_of_the_last_window_values() -> None:
    sma = SlidingSma(3)
    values = [10, 20, 30, 40, 50]

    totals = []
    for i, v in enumerate(values):
        sma.push(v)
        totals.append((sma.total, sum(values[max(0, i - 2) : i + 1])))

    assert all(got == want for got, want in totals)
    assert sma.total == 120


def test_sliding_sma_window_of_one_tracks_the_last_value() -> None:
    sma = SlidingSma(1)

    push_all(sma, [7, 3, 9])

    assert sma.ready
    assert sma.total == 9


@settings(max_examples=200, deadline=None)
@given(
    window=st.integers(min_value=1, max_value=30),
    values=st.lists(st.integers(min_value=1, max_value=10**23), min_size=1, max_size=200),
)
def test_sliding_sma_running_sum_is_exact_against_a_naive_mean(window: int, values: list[int]) -> None:
    sma = SlidingSma(window)

    for i, v in enumerate(values):
        sma.push(v)
        tail = values[max(0, i + 1 - window) : i + 1]
        assert sma.total == sum(tail)
        assert sma.ready == (len(tail) == window)
        if sma.ready:
            assert Fraction(sma.total, sma.window) == naive_mean(tail)


# --- SmaCrossover -------------------------------------------------------------------------


@pytest.mark.parametrize(("fast", "slow"), [(5, 5), (6, 5), (2, 1)])
def test_crossover_requires_fast_shorter_than_slow(fast: int, slow: int) -> None:
    with pytest.raises(ValueError):
        SmaCrossover(fast, slow)


def test_crossover_buy_when_fast_crosses_above_and_sell_when_below() -> None:
    # fast=2, slow=3. At tick 3: fast 10.5 < slow 11 (side set, no signal).
    # Tick 4 (13): fast 11.5 > slow 11.33 -> BUY. Tick 5 (5): fast 9 < slow 9.33 -> SELL.
    prices = [12, 11, 10, 13, 5]

    assert signals_of(2, 3, prices) == [None, None, None, "BUY", "SELL"]


def test_crossover_no_signal_while_fast_stays_on_one_side() -> None:
    prices = [50, 40, 30, 20, 10, 5, 3, 2]  # falling: fast always below slow

    assert signals_of(2, 4, prices) == [None] * len(prices)


def test_crossover_no_signal_before_the_slow_window_is_full() -> None:
    # A wild zig-zag: fast flips side every tick, but slow (5) is not ready for 4 ticks.
    prices = [1, 100, 1, 100, 1, 100, 1]
    signals = signals_of(1, 5, prices)

    assert signals[:4] == [None] * 4
    # Tick 5 only sets the first side; crosses come after.
    assert signals[4] is None
    assert signals[5:] == ["BUY", "SELL"]


def test_crossover_first_ready_side_is_not_a_signal() -> None:
    # When slow becomes ready with fast already above, that is a state, not a cross.
    assert signals_of(1, 3, [1, 2, 30]) == [None, None, None]


def test_crossover_touching_equality_and_returning_is_not_a_cross() -> None:
    # fast=1, slow=3. [24,24,18]: fast 18 < slow 22. 21: slow (24+18+21)/3 = 21 == fast.
    # 19: slow 19.33 > fast 19: back below, never crossed.
    assert signals_of(1, 3, [24, 24, 18, 21, 19]) == [None] * 5


def test_crossover_through_equality_signals_when_strictly_across() -> None:
    # As above, but after the equal tick fast goes strictly above: BUY on that tick, not on the equal one.
    assert signals_of(1, 3, [24, 24, 18, 21, 20]) == [None, None, None, None, "BUY"]


def test_crossover_long_equality_keeps_the_previous_side() -> None:
    # Below, then many equal ticks (flat prices), then above: still a BUY.
    prices = [10, 9, 8] + [8] * 10 + [9]

    assert signals_of(2, 3, prices)[-1] == "BUY"
    assert signals_of(2, 3, prices)[:-1] == [None] * (len(prices) - 1)


def test_crossover_equal_from_the_start_then_moving_is_not_a_signal() -> None:
    # No strict side was ever seen, so the first strict side is not a cross.
    assert signals_of(2, 3, [5, 5, 5, 5, 6]) == [None] * 5


def test_crossover_relation_reports_the_last_strict_side() -> None:
    xo = SmaCrossover(1, 3)
    seen = []

    for p in (24, 24, 18, 21, 20):
        xo.push(p)
        seen.append(xo.relation)

    assert seen == [0, 0, -1, -1, 1]


def test_seed_relation_only_fills_an_unknown_side() -> None:
    unknown, known = SmaCrossover(1, 3), SmaCrossover(1, 3)
    for p in (5, 5, 5):
        unknown.push(p)
    for p in (5, 5, 1):
        known.push(p)

    unknown.seed_relation(-7)
    known.seed_relation(1)

    assert unknown.relation == -1
    assert known.relation == -1
    assert unknown.push(9) == "BUY"


@settings(max_examples=300, deadline=None)
@given(
    windows=st.tuples(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=8)),
    prices=st.lists(st.integers(min_value=1, max_value=6), min_size=0, max_size=80),
)
def test_crossover_matches_naive_recomputation(windows: tuple[int, int], prices: list[int]) -> None:
    fast, extra = windows
    slow = fast + extra

    assert signals_of(fast, slow, prices) == naive_signals(fast, slow, prices)


@settings(max_examples=200, deadline=None)
@given(
    windows=st.tuples(st.integers(min_value=1, max_value=5), st.integers(min_value=1, max_value=6)),
    prices=st.lists(st.integers(min_value=1, max_value=10**12), min_size=0, max_size=80),
)
def test_crossover_signals_alternate_and_agree_with_the_means(windows: tuple[int, int], prices: list[int]) -> None:
    fast, extra = windows
    slow = fast + extra
    signals = signals_of(fast, slow, prices)

    fired = [(i, s) for i, s in enumerate(signals) if s is not None]
    sides = [s for _, s in fired]
    assert all(a != b for a, b in itertools.pairwise(sides))
    for i, side in fired:
        assert i + 1 >= slow
        f = naive_mean(prices[i + 1 - fast : i + 1])
        s = naive_mean(prices[i + 1 - slow : i + 1])
        assert (f > s) if side == "BUY" else (f < s)
