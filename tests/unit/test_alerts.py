"""Price alerts, pure logic: request validation and which quotes and signals trigger which alerts."""

from __future__ import annotations

import random

import msgspec
import pytest

from stockctl.alerts.rules import (
    Alert,
    AlertIn,
    AlertIndex,
    AlertSpec,
    already_met,
    check_distance,
    describe,
    fired,
    is_after,
    parse_request,
)
from stockctl.errors import UsageError
from tests.support.arithmetic import units_of


def alert(
    alert_id: int,
    condition: str = "above",
    threshold: str | None = "200.00",
    symbol: str = "AAPL",
    side: str | None = None,
    after_seq: int = 10,
    after_ts: int = 1_000,
) -> Alert:
    return Alert(
        id=alert_id,
        user="ada@example.com",
        symbol=symbol,
        condition=condition,  # type: ignore[arg-type]
        created=1,
        threshold=None if condition == "cross-sma" else threshold,
        side=side,  # type: ignore[arg-type]
        after_seq=after_seq,
        after_ts=after_ts,
    )


# --- validation -----------------------------------------------------------------------------


def test_an_above_request_is_normalised_to_an_exact_threshold() -> None:
    req = AlertIn(symbol=" aapl ", condition="Above", threshold="200.5")

    spec = parse_request(req)

    assert spec == AlertSpec("AAPL", "above", "200.50", 200_50_000_000)


def test_an_integer_threshold_is_exact_too() -> None:
    spec = parse_request(AlertIn("MSFT", "below", 150))

    assert (spec.threshold, spec.units) == ("150.00", 150 * 10**8)


def test_cross_sma_takes_an_optional_side() -> None:
    either = parse_request(AlertIn("AAPL", "cross-sma"))
    buys = parse_request(AlertIn("AAPL", "CROSS-SMA", side="BUY"))

    assert (either.condition, either.side, either.threshold) == ("cross-sma", None, None)
    assert buys.side == "buy"


@pytest.mark.parametrize(
    ("threshold", "needle"),
    [
        ("NaN", "not a positive decimal price"),
        ("-5", "not a positive decimal price"),
        ("0", "above zero"),
        ("0.00000000", "above zero"),
        ("1.123456789", "too many decimals"),
        ("1e3", "not a positive decimal price"),
        ("99999999999999999", "not a positive decimal price"),
        ("9999999999999999", "absurdly large"),
        ("２００", "not a positive decimal price"),
        (200.5, "not exact"),
        (None, "need a price"),
    ],
)
def test_a_bad_threshold_is_refused_with_the_reason(threshold: object, needle: str) -> None:
    req = AlertIn("AAPL", "above", threshold)  # type: ignore[arg-type]

    with pytest.raises(UsageError) as info:
        parse_request(req)

    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("req", "needle"),
    [
        (AlertIn("AAPL", "sideways", "1"), "bad condition 'sideways'; conditions: above PRICE"),
        (AlertIn("AA..PL", "above", "1"), "bad symbol"),
        (AlertIn("AAPL", "cross-sma", "200"), "cross-sma takes no price"),
        (AlertIn("AAPL", "cross-sma", side="hold"), "bad side 'hold'"),
        (AlertIn("AAPL", "above", "200", side="buy"), "side applies to cross-sma only"),
    ],
)
def test_a_bad_request_is_refused_with_the_reason(req: AlertIn, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_request(req)

    assert needle in str(info.value)


def test_a_request_body_with_unknown_fields_does_not_decode() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"symbol":"AAPL","condition":"above","threshold":"1","price":"2"}', type=AlertIn)


def test_a_threshold_more_than_1000x_off_the_last_price_is_a_typo() -> None:
    far_above = parse_request(AlertIn("AAPL", "above", "228610.01"))
    far_below = parse_request(AlertIn("AAPL", "below", "0.22"))
    edge = parse_request(AlertIn("AAPL", "above", "228610.00"))

    with pytest.raises(UsageError, match=r"absurdly far from AAPL's last price 228\.61"):
        check_distance(far_above, "228.61")
    with pytest.raises(UsageError, match="absurdly far"):
        check_distance(far_below, "228.61")
    check_distance(edge, "228.61")  # exactly 1000x: allowed
    check_distance(parse_request(AlertIn("AAPL", "cross-sma")), "228.61")


def test_already_met_compares_exactly_at_the_boundary() -> None:
    above = parse_request(AlertIn("AAPL", "above", "200.00000001"))
    below = parse_request(AlertIn("AAPL", "below", "200"))

    assert not already_met(above, "200.00000000")
    assert already_met(above, "200.00000001")
    assert already_met(below, "200")
    assert not already_met(below, "200.00000001")


def test_describe_names_symbol_condition_and_price_or_side() -> None:
    assert describe(alert(1)) == "AAPL above 200.00"
    assert describe(alert(2, "cross-sma", side="sell")) == "AAPL cross-sma sell"
    assert describe(alert(3, "cross-sma")) == "AAPL cross-sma"


# --- evaluation -----------------------------------------------------------------------------


def test_above_fires_at_or_above_the_threshold_only() -> None:
    index = AlertIndex([alert(1, "above", "200.00")])

    below = index.on_price("AAPL", units_of("199.99999999"), ts=2_000, seq=11)
    at = index.on_price("AAPL", units_of("200.00"), ts=2_000, seq=11)

    assert below == []
    assert [a.id for a in at] == [1]


def test_below_fires_at_or_below_the_threshold_only() -> None:
    index = AlertIndex([alert(1, "below", "150.25")])

    above = index.on_price("AAPL", units_of("150.25000001"), ts=2_000, seq=11)
    at = index.on_price("AAPL", units_of("150.25"), ts=2_000, seq=11)
    under = index.on_price("AAPL", units_of("3.00"), ts=2_000, seq=11)

    assert above == []
    assert [a.id for a in at] == [1] and [a.id for a in under] == [1]


def test_only_quotes_after_the_alert_count() -> None:
    a = alert(1, after_seq=10, after_ts=1_000)
    index = AlertIndex([a])

    same = index.on_price("AAPL", units_of("250"), ts=1_000, seq=10)
    older = index.on_price("AAPL", units_of("250"), ts=900, seq=9)
    restarted = index.on_price("AAPL", units_of("250"), ts=1_001, seq=1)  # sequence began again, later time

    assert same == [] and older == []
    assert [x.id for x in restarted] == [1]
    assert is_after(a, ts=0, seq=11) and not is_after(a, ts=1_000, seq=10)


def test_other_symbols_are_not_touched() -> None:
    index = AlertIndex([alert(1, symbol="AAPL"), alert(2, symbol="MSFT")])

    hits = index.on_price("MSFT", units_of("500"), ts=2_000, seq=11)

    assert [a.id for a in hits] == [2]
    assert index.watches("AAPL") and not index.watches("TSLA")


def test_cross_sma_fires_on_a_signal_of_the_wanted_side() -> None:
    index = AlertIndex([alert(1, "cross-sma"), alert(2, "cross-sma", side="buy"), alert(3, "cross-sma", side="sell")])

    buy = index.on_signal("AAPL", "BUY", ts=2_000, seq=11)
    sell = index.on_signal("AAPL", "SELL", ts=2_000, seq=11)
    old = index.on_signal("AAPL", "BUY", ts=500, seq=5)

    assert [a.id for a in buy] == [1, 2]
    assert [a.id for a in sell] == [1, 3]
    assert old == []
    assert index.on_price("AAPL", units_of("1000"), ts=2_000, seq=11) == []


def test_discard_and_replace_keep_the_index_consistent() -> None:
    index = AlertIndex([alert(1), alert(2, "below", "100"), alert(3, "cross-sma")])

    gone = index.discard(1)
    again = index.discard(1)
    new = index.replace([alert(2, "below", "100"), alert(4, "above", "300", symbol="TSLA")])

    assert gone is not None and gone.id == 1 and again is None
    assert new == {4}
    assert sorted(index.alerts) == [2, 4]
    assert index.symbols() == {"AAPL", "TSLA"}
    assert index.on_signal("AAPL", "BUY", ts=2_000, seq=11) == []  # 3 was replaced away
    assert index.on_price("AAPL", units_of("250"), ts=2_000, seq=11) == []


def test_a_fired_alert_records_when_at_what_price_and_which_crossover() -> None:
    a = alert(7, "cross-sma")

    done = fired(a, "201.50", seq=42, now_ns=123, signal="BUY")

    assert (done.status, done.fired_price, done.fired_seq, done.fired_ts, done.signal) == (
        "fired",
        "201.50",
        42,
        123,
        "BUY",
    )
    assert AlertIndex([done]).alerts == {}  # a fired alert is never indexed as active


def test_the_index_agrees_with_a_naive_scan_over_many_alerts() -> None:
    # Arrange: 600 random alerts on three symbols, and 300 random prices.
    rng = random.Random(5)
    alerts = []
    for i in range(1, 601):
        cond = rng.choice(["above", "below", "cross-sma"])
        price = f"{rng.randint(90, 110)}.{rng.randint(0, 99):02d}"
        alerts.append(alert(i, cond, price, symbol=rng.choice(["A", "B", "C"]), after_seq=rng.randint(0, 20)))
    index = AlertIndex(alerts)
    live = {a.id: a for a in alerts}

    # Act: feed prices, discarding what fires, as the daemon does; the oracle scans every alert.
    for seq in range(1, 301):
        sym = rng.choice(["A", "B", "C"])
        price = units_of(f"{rng.randint(85, 115)}.{rng.randint(0, 99):02d}")
        got = [a.id for a in index.on_price(sym, price, ts=0, seq=seq)]
        want = sorted(
            a.id
            for a in live.values()
            if a.symbol == sym
            and a.condition != "cross-sma"
            and seq > a.after_seq
            and (
                (a.condition == "above" and price >= units_of(a.threshold or "0"))
                or (a.condition == "below" and price <= units_of(a.threshold or "0"))
            )
        )
        # Assert
        assert got == want, seq
        for alert_id in got:
            index.discard(alert_id)
            del live[alert_id]
    assert len(index) == len(live) > 0
