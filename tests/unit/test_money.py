"""stockctl.marketdata.money: exact decimal strings <-> integer units, and exact ratio strings."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockctl.marketdata.money import MAX_UNITS, PriceError, from_units, mean_str, pct_change_str, to_units
from tests.support.arithmetic import SCALE, round_half_even, units_of

QUADRILLION = 10**15


def price_text(whole: int, frac: str = "") -> str:
    return f"{whole}.{frac}" if frac else str(whole)


# --- to_units: exact parsing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("189.25", 189 * SCALE + 25_000_000),
        ("1", SCALE),
        ("0.00000001", 1),
        ("0.1", 10_000_000),
        ("007.50", 7 * SCALE + 50_000_000),
        ("123456789.12345678", 123456789 * SCALE + 12345678),
        ("1000000000000000", QUADRILLION * SCALE),
    ],
)
def test_to_units_parses_exactly(text: str, expected: int) -> None:
    units = to_units(text)

    assert units == expected
    assert isinstance(units, int)


def test_to_units_is_exact_where_float_is_not() -> None:
    # 0.1 + 0.2 != 0.3 in float; in units it must be exact.
    a, b, c = to_units("0.1"), to_units("0.2"), to_units("0.3")

    assert a + b == c


@settings(max_examples=300, deadline=None)
@given(
    whole=st.integers(min_value=0, max_value=QUADRILLION - 1),
    frac=st.text(alphabet="0123456789", min_size=0, max_size=8),
)
def test_to_units_matches_string_arithmetic(whole: int, frac: str) -> None:
    text = price_text(whole, frac)
    expected = units_of(text)

    if expected == 0:
        with pytest.raises(PriceError):
            to_units(text)
    else:
        assert to_units(text) == expected


@pytest.mark.parametrize("text", [" 1.5", "1.5 ", "\t1.5\n", "  1.5  "])
def test_to_units_ignores_surrounding_whitespace(text: str) -> None:
    assert to_units(text) == SCALE + SCALE // 2


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "-1",
        "-0.5",
        "+1",
        "1e3",
        "1E3",
        "1.5e2",
        "1e-8",
        ".5",
        "5.",
        "",
        "   ",
        "1,000",
        "1 000",
        "1. 5",
        "1 .5",
        "1_000",
        "0x10",
        "abc",
        "1.2.3",
        "$1",
        "1.5USD",
    ],
)
def test_to_units_rejects_non_decimal_text(text: str) -> None:
    with pytest.raises(PriceError) as err:
        to_units(text)

    assert repr(text) in str(err.value)


@pytest.mark.parametrize("text", ["0", "0.0", "00", "0.00000000"])
def test_to_units_rejects_zero(text: str) -> None:
    with pytest.raises(PriceError, match="above zero"):
        to_units(text)


@pytest.mark.parametrize("text", ["1.123456789", "0.000000001", "189.2500000000"])
def test_to_units_rejects_more_than_eight_decimals(text: str) -> None:
    with pytest.raises(PriceError, match="too many decimals"):
        to_units(text)


@pytest.mark.parametrize(
    "text",
    ["1000000000000000.00000001", "1000000000000001", "9999999999999999.99999999", "10000000000000000", "9" * 40],
)
def test_to_units_rejects_absurd_sizes(text: str) -> None:
    with pytest.raises(PriceError):
        to_units(text)


def test_to_units_accepts_the_largest_sane_price() -> None:
    assert to_units("1000000000000000") == MAX_UNITS
    assert to_units("999999999999999.99999999") == MAX_UNITS - 1


def test_price_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        to_units("NaN")


# --- from_units: exact formatting ---------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "min_dp", "expected"),
    [
        (SCALE, 2, "1.00"),
        (SCALE + SCALE // 2, 2, "1.50"),
        (1, 2, "0.00000001"),
        (123_456_789, 2, "1.23456789"),
        (189 * SCALE + 25_000_000, 2, "189.25"),
        (0, 2, "0.00"),
        (-(SCALE + SCALE // 2), 2, "-1.50"),
        (-1, 2, "-0.00000001"),
        (SCALE, 0, "1"),
        (SCALE + 10_000_000, 0, "1.1"),
        (SCALE + SCALE // 2, 4, "1.5000"),
        (QUADRILLION * SCALE, 2, "1000000000000000.00"),
    ],
)
def test_from_units_formats_exactly(units: int, min_dp: int, expected: str) -> None:
    assert from_units(units, min_dp) == expected


@settings(max_examples=300, deadline=None)
@given(units=st.integers(min_value=1, max_value=MAX_UNITS))
def test_from_units_round_trips_through_to_units(units: int) -> None:
    text = from_units(units)

    whole, _, frac = text.partition(".")
    assert Fraction(int(whole) * SCALE + int(frac.ljust(8, "0")), SCALE) == Fraction(units, SCALE)
    assert len(frac) >= 2
    assert len(frac) == 2 or not frac.endswith("0")
    assert to_units(text) == units


# --- mean_str / pct_change_str ------------------------------------------------------------


@pytest.mark.parametrize(
    ("prices", "expected"),
    [
        (["1.00", "2.00"], "1.5000"),
        (["1.00", "1.00", "2.00"], "1.3333"),
        (["2.00", "2.00", "1.00"], "1.6667"),
        (["0.00005"], "0.0000"),  # a tie rounds to even ...
        (["0.00015"], "0.0002"),  # ... in both directions
        (["0.00025"], "0.0002"),
        (["100.00", "100.00000001"], "100.0000"),
    ],
)
def test_mean_str_examples(prices: list[str], expected: str) -> None:
    total = sum(to_units(p) for p in prices)

    assert mean_str(total, len(prices)) == expected


@settings(max_examples=300, deadline=None)
@given(prices=st.lists(st.integers(min_value=1, max_value=10**20), min_size=1, max_size=60))
def test_mean_str_is_exact_half_even(prices: list[int]) -> None:
    expected = round_half_even(Fraction(sum(prices), len(prices) * SCALE), 4)

    assert mean_str(sum(prices), len(prices)) == expected


def test_mean_str_honours_dp() -> None:
    total = to_units("1") + to_units("2") + to_units("2")

    assert mean_str(total, 3, dp=2) == "1.67"
    assert mean_str(total, 3, dp=6) == "1.666667"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("100.00", "101.00", "1.00"),
        ("100.00", "100.00", "0.00"),
        ("3.00", "4.00", "33.33"),
        ("8.00", "7.00", "-12.50"),
        ("1.00", "3.00", "200.00"),
        ("8.00", "8.01", "0.12"),  # 0.125 -> even
        ("8.00", "8.03", "0.38"),  # 0.375 -> even
        ("8.00", "7.99", "-0.12"),
    ],
)
def test_pct_change_str_examples(old: str, new: str, expected: str) -> None:
    assert pct_change_str(to_units(old), to_units(new)) == expected


@settings(max_examples=300, deadline=None)
@given(
    old=st.integers(min_value=1, max_value=MAX_UNITS),
    new=st.integers(min_value=1, max_value=MAX_UNITS),
)
def test_pct_change_str_is_exact_half_even(old: int, new: int) -> None:
    expected = round_half_even(Fraction((new - old) * 100, old), 2)
    if expected == "-0.00":
        expected = "0.00"  # a fall too small to show is shown as no change, never as "-0.00"

    assert pct_change_str(old, new) == expected
