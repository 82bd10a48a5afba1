"""stockctl.candles: interval parsing, bucket alignment and OHLCV folding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockctl.marketdata.candles import CandleBuilder, CandleState, bucket_start, parse_interval

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def minute_builder() -> CandleBuilder:
    return CandleBuilder(MINUTE)


def ohlcv(ticks: list[tuple[int, int]]) -> tuple[int, int, int, int, int, int]:
    """Naive open/high/low/close/volume/count of (price, volume) ticks."""
    prices = [p for p, _ in ticks]
    return prices[0], max(prices), min(prices), prices[-1], sum(v for _, v in ticks), len(ticks)


def as_tuple(c: CandleState) -> tuple[int, int, int, int, int, int]:
    return c.open, c.high, c.low, c.close, c.volume, c.count


# --- parse_interval -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", SECOND),
        ("30s", 30 * SECOND),
        ("1m", MINUTE),
        ("5m", 5 * MINUTE),
        ("1h", HOUR),
        ("4h", 4 * HOUR),
        ("1d", DAY),
        ("9999s", 9999 * SECOND),
        (" 1m ", MINUTE),
        ("01m", MINUTE),
    ],
)
def test_parse_interval_accepts_number_and_unit(text: str, expected: int) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "0s", "0m", "00h", "1", "m", "1w", "1M", "1S", "1.5m", "-1m", "+1m", "10000s", "1 m", "1mm", "m1", "1ms"],
)
def test_parse_interval_rejects_bad_values_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_interval(text)

    message = str(err.value)
    assert repr(text) in message
    assert "1s" in message and "5m" in message and "1h" in message


# --- bucket_start -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "interval", "expected"),
    [
        (0, MINUTE, 0),
        (MINUTE - 1, MINUTE, 0),
        (MINUTE, MINUTE, MINUTE),
        (MINUTE + 1, MINUTE, MINUTE),
        (3 * DAY + 5 * HOUR + 7, DAY, 3 * DAY),
        (-1, MINUTE, -MINUTE),
    ],
)
def test_bucket_start_examples(ts: int, interval: int, expected: int) -> None:
    assert bucket_start(ts, interval) == expected


@settings(max_examples=300, deadline=None)
@given(ts=st.integers(min_value=0, max_value=4 * 10**18), interval=st.integers(min_value=1, max_value=DAY))
def test_bucket_start_is_the_aligned_start_containing_ts(ts: int, interval: int) -> None:
    start = bucket_start(ts, interval)

    assert start % interval == 0
    assert start <= ts < start + interval


# --- CandleBuilder ------------------------------------------------------------------------


def test_first_tick_opens_a_candle_at_the_bucket_start() -> None:
    b = minute_builder()
    ts = 10 * MINUTE + 17 * SECOND

    c = b.add(ts, 500, 3)

    assert c is b.current
    assert c is not None
    assert c.start == 10 * MINUTE
    assert as_tuple(c) == (500, 500, 500, 500, 3, 1)


def test_ticks_in_one_bucket_fold_into_ohlcv() -> None:
    b = minute_builder()
    ticks = [(500, 3), (520, 1), (480, 10), (505, 0), (510, 2)]

    for i, (price, vol) in enumerate(ticks):
        c = b.add(10 * MINUTE + i * SECOND, price, vol)

    assert c is not None
    assert as_tuple(c) == ohlcv(ticks)
    assert c.start == 10 * MINUTE


def test_tick_in_a_new_bucket_starts_a_fresh_candle_and_leaves_the_old_one() -> None:
    b = minute_builder()
    first = b.add(10 * MINUTE + 5 * SECOND, 500, 3)
    b.add(10 * MINUTE + 59 * SECOND, 600, 4)
    assert first is not None
    closed = as_tuple(first)

    second = b.add(11 * MINUTE, 450, 7)  # exactly on the boundary

    assert second is not None and second is not first
    assert second.start == 11 * MINUTE
    assert as_tuple(second) == (450, 450, 450, 450, 7, 1)
    assert as_tuple(first) == closed == (500, 600, 500, 600, 7, 2)
    assert b.current is second


def test_skipped_buckets_are_not_filled() -> None:
    b = minute_builder()
    b.add(10 * MINUTE, 500, 1)

    c = b.add(15 * MINUTE + 1, 501, 1)

    assert c is not None and c.start == 15 * MINUTE


def test_late_tick_from_an_older_bucket_is_ignored() -> None:
    b = minute_builder()
    b.add(10 * MINUTE + 1, 500, 1)
    current = b.add(11 * MINUTE + 1, 510, 2)
    assert current is not None
    before = (current.start, *as_tuple(current))

    result = b.add(10 * MINUTE + 30 * SECOND, 999_999, 1000)

    assert result is None
    assert b.current is current
    assert (current.start, *as_tuple(current)) == before


def test_out_of_order_tick_within_the_current_bucket_still_counts() -> None:
    b = minute_builder()
    b.add(10 * MINUTE + 30 * SECOND, 500, 1)

    c = b.add(10 * MINUTE + 10 * SECOND, 400, 1)  # earlier, but same bucket

    assert c is not None
    assert as_tuple(c) == (500, 500, 400, 400, 2, 2)


def test_builder_resumes_from_a_restored_candle() -> None:
    restored = CandleState(10 * MINUTE, 500, 600, 450, 550, 9, 4)
    b = CandleBuilder(MINUTE, restored)

    c = b.add(10 * MINUTE + 59 * SECOND, 700, 1)
    late = b.add(9 * MINUTE, 1, 1)

    assert c is restored
    assert as_tuple(c) == (500, 700, 450, 700, 10, 5)
    assert late is None


@settings(max_examples=200, deadline=None)
@given(
    ticks=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10 * MINUTE),
            st.integers(min_value=1, max_value=10**12),
            st.integers(min_value=0, max_value=1000),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_builder_matches_naive_bucketing(ticks: list[tuple[int, int, int]]) -> None:
    """Sorted ticks: every bucket's last candle equals a naive OHLCV of that bucket's ticks."""
    ticks = sorted(ticks, key=lambda t: t[0])
    b = minute_builder()
    finals: dict[int, tuple[int, ...]] = {}

    for ts, price, vol in ticks:
        c = b.add(ts, price, vol)
        assert c is not None
        finals[c.start] = as_tuple(c)

    expected: dict[int, list[tuple[int, int]]] = {}
    for ts, price, vol in ticks:
        expected.setdefault(ts // MINUTE * MINUTE, []).append((price, vol))
    assert finals == {start: ohlcv(bucket) for start, bucket in expected.items()}
