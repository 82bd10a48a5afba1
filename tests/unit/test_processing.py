"""stockctl.processing: dedup verdicts, what a tick changes, and restart from stored state."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockctl.marketdata.candles import CandleState
from stockctl.marketdata.processing import Applied, SymbolState, Verdict, candle_of, quote_from_fields
from stockctl.wire.marketdata import Candle, PricePoint, Tick
from tests.support.arithmetic import SCALE, naive_mean, round_half_even, units_of

NS = 1_000_000_000
DAY = 86_400 * NS
MIDNIGHT = 19_700 * DAY  # a UTC midnight
FAST, SLOW = 2, 3
INTERVALS = ["1s", "1m"]


def make_state(symbol: str = "AAPL", fast: int = FAST, slow: int = SLOW) -> SymbolState:
    return SymbolState.new(symbol, fast, slow, INTERVALS)


def tick(seq: int, price: str, ts: int | None = None, volume: int = 0, symbol: str = "AAPL") -> Tick:
    return Tick(symbol, price, MIDNIGHT + seq * NS if ts is None else ts, seq, volume)


def apply_prices(state: SymbolState, prices: list[str], first_seq: int = 1) -> list[Applied]:
    out = []
    for i, p in enumerate(prices):
        seq = first_seq + i
        out.append(state.apply(tick(seq, p), seq))
    return out


def mean_str_of(prices: list[str]) -> str:
    return round_half_even(naive_mean([units_of(p) for p in prices]) / SCALE, 4)


def fields_as_redis(state: SymbolState) -> dict[str, str]:
    """What HGETALL hands back: every value a string."""
    return {k: str(v) for k, v in state.quote_fields().items()}


def last_candles(state: SymbolState) -> dict[str, Candle]:
    return {iv: candle_of(state.symbol, iv, b.current) for iv, b in state.candles.items() if b.current is not None}


def restored_copy(state: SymbolState, history: list[PricePoint]) -> SymbolState:
    fast, slow = state.crossover.fast.window, state.crossover.slow.window
    return SymbolState.restore(
        state.symbol, fast, slow, list(state.candles), fields_as_redis(state), history, last_candles(state)
    )


# --- classify -----------------------------------------------------------------------------


def test_fresh_state_applies_any_first_tick() -> None:
    state = make_state()

    assert state.classify(tick(1, "1.00"), 1) is Verdict.APPLY
    assert state.classify(tick(57, "1.00"), 900) is Verdict.APPLY


@pytest.mark.parametrize(
    ("seq", "sseq", "verdict"),
    [
        (6, 11, Verdict.APPLY),  # the next tick
        (6, 9, Verdict.APPLY),  # the next tick, delivered out of stream order (a publisher retry)
        (7, 11, Verdict.GAP),  # seq 6 is missing
        (50, 99, Verdict.GAP),
        (1, 11, Verdict.RESET),  # the publisher restarted: seq 1 at a new stream position
        (1, 10, Verdict.DUPLICATE),  # seq 1 again, but not from a newer stream position
        (1, 3, Verdict.DUPLICATE),
        (5, 10, Verdict.DUPLICATE),  # a redelivery of the applied tick
        (5, 11, Verdict.DUPLICATE),  # the applied tick, published twice
        (3, 11, Verdict.DUPLICATE),  # an older tick
    ],
)
def test_classify_after_applying(seq: int, sseq: int, verdict: Verdict) -> None:
    state = make_state()
    state.apply(tick(5, "1.00"), 10)

    assert state.classify(tick(seq, "1.00"), sseq) is verdict


def test_stream_position_never_moves_backwards() -> None:
    state = make_state()
    state.apply(tick(5, "1.00"), 10)

    state.apply(tick(6, "1.00"), 8)  # applied out of stream order

    assert (state.last_seq, state.last_sseq) == (6, 10)
    assert state.classify(tick(1, "1.00"), 9) is Verdict.DUPLICATE
    assert state.classify(tick(1, "1.00"), 11) is Verdict.RESET


def test_classify_does_not_change_state() -> None:
    state = make_state()
    state.apply(tick(5, "1.00"), 10)

    for seq, sseq in ((9, 20), (1, 30), (6, 11), (2, 2)):
        state.classify(tick(seq, "1.00"), sseq)

    assert (state.last_seq, state.last_sseq) == (5, 10)


# --- apply: the day's numbers -------------------------------------------------------------


def test_first_tick_sets_the_day() -> None:
    state = make_state()

    a = state.apply(tick(1, "100.50", volume=30), 1)

    q = a.quote
    assert (q.symbol, q.price, q.seq, q.ts) == ("AAPL", "100.50", 1, MIDNIGHT + NS)
    assert (q.open, q.high, q.low) == ("100.50", "100.50", "100.50")
    assert (q.change, q.change_pct, q.volume) == ("0.00", "0.00", 30)
    assert (state.last_seq, state.last_sseq) == (1, 1)
    assert a.point == PricePoint("100.50", MIDNIGHT + NS, 1)


def test_day_open_high_low_volume_and_change() -> None:
    state = make_state()
    ticks = [("100.00", 10), ("103.25", 5), ("98.10", 1), ("101.005", 0), ("99.99", 4)]

    quotes = [state.apply(tick(i + 1, p, volume=v), i + 1).quote for i, (p, v) in enumerate(ticks)]

    units = [units_of(p) for p, _ in ticks]
    for i, q in enumerate(quotes):
        seen = units[: i + 1]
        assert units_of(q.open) == units[0]
        assert units_of(q.high) == max(seen)
        assert units_of(q.low) == min(seen)
        assert q.volume == sum(v for _, v in ticks[: i + 1])
        assert Fraction(units[i] - units[0], SCALE) == Fraction(q.change)
        assert q.change_pct == round_half_even(Fraction((units[i] - units[0]) * 100, units[0]), 2)
    assert quotes[-1].change == "-0.01"
    assert quotes[1].change_pct == "3.25"


def test_utc_midnight_starts_a_new_day() -> None:
    state = make_state()
    state.apply(tick(1, "100.00", ts=MIDNIGHT - 2 * NS, volume=10), 1)
    state.apply(tick(2, "120.00", ts=MIDNIGHT - 1, volume=10), 2)  # last ns of the old day

    q = state.apply(tick(3, "90.00", ts=MIDNIGHT, volume=3), 3).quote  # first ns of the new day

    assert (q.open, q.high, q.low, q.volume) == ("90.00", "90.00", "90.00", 3)
    assert (q.change, q.change_pct) == ("0.00", "0.00")
    assert state.day == MIDNIGHT // DAY


def test_last_tick_before_midnight_stays_in_the_old_day() -> None:
    state = make_state()
    state.apply(tick(1, "100.00", ts=MIDNIGHT - DAY), 1)  # the old day's first ns

    q = state.apply(tick(2, "120.00", ts=MIDNIGHT - 1, volume=2), 2).quote

    assert (q.open, q.high, q.low) == ("100.00", "120.00", "100.00")
    assert (q.change, q.change_pct, q.volume) == ("20.00", "20.00", 2)


# --- apply: SMAs and signals --------------------------------------------------------------


def test_sma_strings_appear_once_each_window_is_full() -> None:
    prices = ["10.00", "11.00", "13.00", "12.00"]

    quotes = [a.quote for a in apply_prices(make_state(), prices)]

    assert (quotes[0].sma_fast, quotes[0].sma_slow) == (None, None)
    assert quotes[1].sma_fast == mean_str_of(prices[0:2]) == "10.5000"
    assert quotes[1].sma_slow is None
    assert quotes[2].sma_fast == mean_str_of(prices[1:3])
    assert quotes[2].sma_slow == mean_str_of(prices[0:3]) == "11.3333"
    assert quotes[3].sma_fast == mean_str_of(prices[2:4])
    assert quotes[3].sma_slow == mean_str_of(prices[1:4])


def test_signal_exactly_at_crossovers() -> None:
    # fast=2, slow=3: tick 3 sets "below"; tick 4 crosses above; tick 5 crosses below.
    prices = ["12.00", "11.00", "10.00", "13.00", "5.00", "4.00"]

    applied = apply_prices(make_state(), prices)

    assert [a.signal.side if a.signal else None for a in applied] == [None, None, None, "BUY", "SELL", None]
    buy = applied[3].signal
    assert buy is not None
    assert (buy.symbol, buy.price, buy.seq, buy.ts) == ("AAPL", "13.00", 4, MIDNIGHT + 4 * NS)
    assert buy.sma_fast == mean_str_of(prices[2:4]) == applied[3].quote.sma_fast
    assert buy.sma_slow == mean_str_of(prices[1:4]) == applied[3].quote.sma_slow


def test_quote_carries_the_side_of_the_latest_signal() -> None:
    applied = apply_prices(make_state(), ["12.00", "11.00", "10.00", "13.00", "14.00", "5.00", "5.00"])

    assert [a.quote.signal for a in applied] == [None, None, None, "BUY", "BUY", "SELL", "SELL"]


def test_no_signal_while_the_slow_window_fills() -> None:
    applied = apply_prices(make_state(fast=1, slow=4), ["1.00", "100.00", "1.00", "100.00"])

    assert all(a.signal is None for a in applied)


# --- apply: candles -----------------------------------------------------------------------


def test_apply_returns_the_changed_candles() -> None:
    state = make_state()
    state.apply(tick(1, "10.00", ts=MIDNIGHT + 1 * NS, volume=1), 1)
    a = state.apply(tick(2, "12.00", ts=MIDNIGHT + 1 * NS + 5, volume=2), 2)

    by_iv = dict(a.candles)
    assert set(by_iv) == {"1s", "1m"}
    for iv in ("1s", "1m"):
        c = by_iv[iv]
        assert (c.open, c.high, c.low, c.close, c.volume, c.count) == (
            units_of("10.00"),
            units_of("12.00"),
            units_of("10.00"),
            units_of("12.00"),
            3,
            2,
        )
    assert by_iv["1s"].start == MIDNIGHT + NS
    assert by_iv["1m"].start == MIDNIGHT


def test_candle_of_formats_prices() -> None:
    c = candle_of("AAPL", "1m", CandleState(MIDNIGHT, units_of("1.5"), units_of("2"), units_of("1"), 1, 9, 3))

    assert c == Candle("AAPL", "1m", MIDNIGHT, "1.50", "2.00", "1.00", "0.00000001", 9, 3)


def test_a_feeds_exact_quantities_make_the_candle_and_day_volume() -> None:
    state = make_state("BTCUSDT")
    ticks = [Tick("BTCUSDT", "67000.00", MIDNIGHT + i * NS // 4, i, 0, "binance:trade:1", q) for i, q in
             enumerate(["0.0012", "0.5", "0.49880001", "1"], start=1)]  # fmt: skip
    applied = [state.apply(t, t.seq) for t in ticks]
    minute = candle_of("BTCUSDT", "1m", state.candles["1m"].current)  # type: ignore[arg-type]
    assert (minute.qty, minute.volume, minute.count) == ("2.00000001", 2, 4)  # volume: the whole units
    second = candle_of("BTCUSDT", "1s", state.candles["1s"].current)  # type: ignore[arg-type]
    assert (second.start, second.qty, second.volume) == (MIDNIGHT + NS, "1", 1)  # the fourth tick alone
    assert [a.quote.qty for a in applied] == ["0.0012", "0.5012", "1.00000001", "2.00000001"]
    assert [a.quote.volume for a in applied] == [0, 0, 1, 2]
    # restart: the quote hash and the newest candles give the exact sums back
    back = restored_copy(state, [a.point for a in applied])
    nxt = Tick("BTCUSDT", "67001.00", MIDNIGHT + 50 * NS, 5, 0, "binance:trade:5", "0.00000002")
    a, b = state.apply(nxt, 5), back.apply(nxt, 5)
    assert a.quote == b.quote and a.quote.qty == "2.00000003"
    assert [candle_of("BTCUSDT", iv, c) for iv, c in a.candles] == [candle_of("BTCUSDT", iv, c) for iv, c in b.candles]
    # a new UTC day starts the day's quantity again; a simulated tick carries none
    late = state.apply(Tick("BTCUSDT", "1.00", MIDNIGHT + DAY, 6, 0, "x", "0.1"), 6).quote
    assert (late.qty, late.volume) == ("0.1", 0)
    sim = make_state().apply(tick(1, "10.00", volume=7), 1)
    assert (sim.quote.qty, sim.quote.volume) == (None, 7)
    assert candle_of("AAPL", "1m", sim.candles[1][1]) == Candle("AAPL", "1m", MIDNIGHT, *["10.00"] * 4, 7, 1)


# --- quote_fields / restore ---------------------------------------------------------------


def test_quote_fields_round_trip_through_strings() -> None:
    state = make_state()
    apply_prices(state, ["12.00", "11.00", "10.00", "13.00"])

    q = quote_from_fields(fields_as_redis(state))

    assert q == state.last_quote


def test_restore_without_fields_is_a_fresh_state() -> None:
    state = SymbolState.restore("AAPL", FAST, SLOW, INTERVALS, {}, [], {})

    assert (state.last_seq, state.last_sseq, state.last_quote) == (0, 0, None)
    assert state.classify(tick(9, "1.00"), 9) is Verdict.APPLY


def test_restore_recovers_dedup_points_and_day() -> None:
    live = make_state()
    history = [a.point for a in apply_prices(live, ["12.00", "11.00", "10.00", "13.00"], first_seq=20)]

    back = restored_copy(live, history)

    assert (back.last_seq, back.last_sseq, back.day) == (live.last_seq, live.last_sseq, live.day)
    assert (back.open, back.high, back.low, back.volume) == (live.open, live.high, live.low, live.volume)
    assert back.last_signal == live.last_signal == "BUY"
    assert back.last_quote == live.last_quote
    assert back.classify(tick(23, "1.00"), 23) is Verdict.DUPLICATE
    assert back.classify(tick(24, "1.00"), 24) is Verdict.APPLY


def run_both(live: SymbolState, back: SymbolState, nxt: list[Tick], first_sseq: int) -> None:
    for i, t in enumerate(nxt):
        sseq = first_sseq + i
        assert live.classify(t, sseq) == back.classify(t, sseq)
        a, b = live.apply(t, sseq), back.apply(t, sseq)
        assert b.quote == a.quote
        assert b.signal == a.signal
        assert b.point == a.point
        assert [(iv, (c.start, c.open, c.high, c.low, c.close, c.volume, c.count)) for iv, c in b.candles] == [
            (iv, (c.start, c.open, c.high, c.low, c.close, c.volume, c.count)) for iv, c in a.candles
        ]


def test_restart_during_a_flat_stretch_does_not_miss_the_next_crossover() -> None:
    # Fast below slow, then prices flat long enough that the kept history shows only
    # fast == slow. The live state remembers "below", so the rise is a BUY; a restored
    # state must see the same BUY.
    live = make_state()
    applied = apply_prices(live, ["10.00", "9.00", "8.00", "8.00", "8.00", "8.00"])
    history = [a.point for a in applied][-SLOW:]  # history_limit may be as small as slow
    back = restored_copy(live, history)
    nxt = tick(7, "9.00")

    a, b = live.apply(nxt, 7), back.apply(nxt, 7)

    assert a.signal is not None and a.signal.side == "BUY"
    assert b.signal == a.signal


def test_restart_from_fields_without_a_stored_side_replays_history() -> None:
    live = make_state()
    applied = apply_prices(live, ["12.00", "11.00", "10.00"])
    fields = fields_as_redis(live)
    del fields["sma_relation"]  # a hash written before the side was stored
    back = SymbolState.restore("AAPL", FAST, SLOW, INTERVALS, fields, [a.point for a in applied], last_candles(live))

    a, b = live.apply(tick(4, "13.00"), 4), back.apply(tick(4, "13.00"), 4)

    assert a.signal is not None and b.signal == a.signal


PRICES = st.sampled_from(["1.00", "1.01", "1.02", "1.03"])


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(PRICES, min_size=1, max_size=40),
    after=st.lists(st.tuples(PRICES, st.integers(0, 50), st.integers(0, 40)), min_size=1, max_size=25),
    extra_history=st.one_of(st.just(0), st.integers(min_value=0, max_value=50)),
    windows=st.sampled_from([(1, 2), (2, 3), (2, 5), (3, 7)]),
)
def test_restore_then_apply_matches_the_live_state(
    before: list[str],
    after: list[tuple[str, int, int]],
    extra_history: int,
    windows: tuple[int, int],
) -> None:
    """Restart anywhere: the restored state produces the same quotes, signals and candles."""
    fast, slow = windows
    live = make_state(fast=fast, slow=slow)
    ts = MIDNIGHT - 30 * NS  # the ticks after the restart cross UTC midnight
    points = []
    for seq, price in enumerate(before, start=1):
        ts += NS
        points.append(live.apply(Tick("AAPL", price, ts, seq, seq % 7), seq * 2).point)
    history = points[-(slow + extra_history) :]  # Redis keeps at least `slow` points

    back = restored_copy(live, history)

    assert back.last_quote == live.last_quote
    nxt = []
    seq = len(before)
    for price, volume, gap_s in after:
        seq += 1
        ts += gap_s * NS // 4
        nxt.append(Tick("AAPL", price, ts, seq, volume))
    run_both(live, back, nxt, first_sseq=len(before) * 2 + 1)
