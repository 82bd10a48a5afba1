"""stockctl.exchange.engine: amend, stop and stop-limit, good-till-date and iceberg, rule by rule."""

from __future__ import annotations

import msgspec
import pytest

from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import Amend, Amended, Fund, Place, Time, encode
from tests.support.engine import (
    MKT,
    cancel,
    cancel_all,
    fee,
    fund,
    funded,
    held,
    kinds,
    limit,
    market,
    notional,
    only,
    shares,
    total,
)

TAKER_BPS = 10
T0 = 1_700_000_000_000_000_000  # ns


@pytest.fixture
def ex() -> Exchange:
    return funded("alice", "bob", "carol", "dave")


def amend(user: str, oid: int, price: str | None = None, qty: str | int | None = None, ts: int = 1) -> Amend:
    return Amend(user, f"am-{oid}-{price}-{qty}", MKT, oid, ts, price=price, qty=None if qty is None else str(qty))


def stop(
    user: str,
    side: str,
    qty: int,
    stop_price: str,
    price: str | None = None,
    coid: str | None = None,
    *,
    kind: str = "stop",
    tif: str = "gtc",
    ts: int = 1,
) -> Place:
    return Place(
        user, coid or f"{user}-stop-{side}-{stop_price}", MKT, side, kind, str(qty), ts,  # type: ignore[arg-type]
        price=price, tif=tif, stop_price=stop_price,  # type: ignore[arg-type]
    )  # fmt: skip


def gtd(user: str, side: str, qty: int, price: str, expire_at: int, coid: str | None = None, ts: int = T0) -> Place:
    return Place(
        user, coid or f"{user}-gtd-{side}-{price}", MKT, side, "limit", str(qty), ts,  # type: ignore[arg-type]
        price=price, tif="gtd", expire_at=expire_at,
    )  # fmt: skip


def iceberg(user: str, side: str, qty: int, price: str, display: int, coid: str | None = None) -> Place:
    return Place(
        user, coid or f"{user}-ice-{side}-{price}", MKT, side, "limit", str(qty), 1,  # type: ignore[arg-type]
        price=price, display_qty=str(display),
    )  # fmt: skip


def code_of(events: list) -> str:
    assert kinds(events) == ["Rejected"], events
    return events[0].code


def trade_last(ex: Exchange, price: str, qty: int = 1) -> None:
    """A trade between carol and dave at ``price``: sets the last trade price."""
    ex.apply(limit("carol", "sell", qty, price, f"set-s-{price}-{qty}"))
    out = ex.apply(limit("dave", "buy", qty, price, f"set-b-{price}-{qty}"))
    assert only(out, "Trade"), out


# --- amend ----------------------------------------------------------------------------------


def test_a_quantity_decrease_at_the_same_price_keeps_time_priority(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 5, "100", "a"))  # 1
    ex.apply(limit("bob", "sell", 5, "100", "b"))  # 2

    out = ex.apply(amend("alice", 1, qty=3))
    fill = ex.apply(limit("carol", "buy", 3, "100", "c"))

    am = out[0]
    assert isinstance(am, Amended)
    assert (am.order_id, am.old_price, am.new_price, am.old_qty, am.new_qty, am.remaining, am.priority, am.status) == (
        1, "100.00", "100.00", "5", "3", "3", "kept", "open",
    )  # fmt: skip
    assert [t.maker_order_id for t in only(fill, "Trade")] == [1]
    assert held(ex, "alice", "TATA") == 0 and held(ex, "bob", "TATA") == shares(5)


def test_a_quantity_increase_loses_time_priority(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 5, "100", "a"))
    ex.apply(limit("bob", "sell", 5, "100", "b"))

    out = ex.apply(amend("alice", 1, qty=6))
    fill = ex.apply(limit("carol", "buy", 5, "100", "c"))

    assert out[0].priority == "lost"
    assert [t.maker_order_id for t in only(fill, "Trade")] == [2]
    assert held(ex, "alice", "TATA") == shares(6)


def test_a_price_change_goes_to_the_back_of_the_new_level(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 2, "101", "a"))  # 1
    ex.apply(limit("bob", "sell", 2, "100", "b"))  # 2

    out = ex.apply(amend("alice", 1, price="100"))
    fill = ex.apply(limit("carol", "buy", 4, "100", "c"))

    assert (out[0].old_price, out[0].new_price, out[0].priority) == ("101.00", "100.00", "lost")
    assert [t.maker_order_id for t in only(fill, "Trade")] == [2, 1]


def test_a_new_quantity_at_or_below_the_filled_part_is_refused_and_changes_nothing(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 5, "100", "a"))
    ex.apply(limit("bob", "buy", 2, "100", "b"))
    before = ex.snapshot()

    assert code_of(ex.apply(amend("alice", 1, qty=2))) == "bad_qty"
    assert code_of(ex.apply(amend("alice", 1, qty=1))) == "bad_qty"
    after = msgspec.json.decode(ex.snapshot())
    after["books"][0]["seq"] -= 2  # the two rejections are events
    assert after == msgspec.json.decode(before)
    assert ex.apply(amend("alice", 1, qty=3))[0].remaining == "1"


def test_an_amend_that_crosses_trades_at_once_as_taker_at_the_makers_prices(ex: Exchange) -> None:
    ex.apply(limit("bob", "sell", 1, "100", "b1"))
    ex.apply(limit("bob", "sell", 1, "100.50", "b2"))
    ex.apply(limit("alice", "buy", 3, "99", "a"))  # 3
    inr = total(ex, "alice", "INR")

    out = ex.apply(amend("alice", 3, price="101"))

    assert kinds(out) == ["Amended", "Trade", "Trade"]
    t1, t2 = only(out, "Trade")
    assert [(t.price, t.taker_order_id, t.taker_side, t.taker_remaining) for t in (t1, t2)] == [
        ("100.00", 3, "buy", "2"), ("100.50", 3, "buy", "1"),
    ]  # fmt: skip
    paid = notional("100", 1) + notional("100.50", 1)
    assert total(ex, "alice", "INR") == inr - paid - fee(notional("100", 1), TAKER_BPS) - fee(
        notional("100.50", 1), TAKER_BPS
    )
    rest = ex.open_orders("alice")[0]
    assert (rest.order_id, rest.price, rest.remaining, rest.qty) == (3, "101.00", "1", "3")
    assert held(ex, "alice", "INR") == notional("101", 1) + fee(notional("101", 1), TAKER_BPS)


def test_a_post_only_amend_that_would_cross_is_refused_and_the_original_stays(ex: Exchange) -> None:
    ex.apply(limit("bob", "sell", 1, "100", "b"))
    ex.apply(limit("alice", "buy", 2, "99", "a", post_only=True))
    before = ex.open_orders("alice")
    held_before = held(ex, "alice", "INR")

    assert code_of(ex.apply(amend("alice", 2, price="100"))) == "post_only"

    assert ex.open_orders("alice") == before
    assert held(ex, "alice", "INR") == held_before
    assert ex.book(MKT).asks == [("100.00", "1", 1)]


def test_amend_adjusts_the_reservation_exactly_both_ways(ex: Exchange) -> None:
    ex.apply(limit("alice", "buy", 10, "100", "a"))
    inr = total(ex, "alice", "INR")

    ex.apply(amend("alice", 1, price="100.05", qty=12))
    assert held(ex, "alice", "INR") == notional("100.05", 12) + fee(notional("100.05", 12), TAKER_BPS)
    ex.apply(amend("alice", 1, qty=4))
    assert held(ex, "alice", "INR") == notional("100.05", 4) + fee(notional("100.05", 4), TAKER_BPS)
    ex.apply(limit("bob", "sell", 3, "200", "s"))
    ex.apply(amend("bob", 2, qty=7))
    assert held(ex, "bob", "TATA") == shares(7)
    assert total(ex, "alice", "INR") == inr
    assert ex.audit() == []


def test_an_amend_beyond_the_funds_is_refused_and_changes_nothing() -> None:
    ex = Exchange()
    fund(ex, "alice", inr="1001")
    ex.apply(limit("alice", "buy", 5, "100", "a"))

    assert code_of(ex.apply(amend("alice", 1, qty=20))) == "funds"
    assert ex.open_orders("alice")[0].qty == "5"


def test_amending_someone_elses_order_is_answered_as_unknown(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 5, "100", "a"))

    theirs = ex.apply(amend("bob", 1, qty=2))[0]
    missing = ex.apply(amend("bob", 99, qty=2))[0]

    assert theirs.code == missing.code == "unknown_order"
    assert theirs.reason == missing.reason.replace("99", "1")
    assert ex.open_orders("alice")[0].qty == "5"


def test_an_amend_with_nothing_to_change_or_bad_values_is_refused(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 5, "100", "a"))

    assert code_of(ex.apply(amend("alice", 1))) == "bad_amend"
    assert code_of(ex.apply(amend("alice", 1, price="100.01"))) == "tick_size"
    assert code_of(ex.apply(amend("alice", 1, qty="0"))) == "bad_qty"


# --- stops ----------------------------------------------------------------------------------


def test_a_stop_is_pending_out_of_the_book_visible_to_its_owner_and_reserved(ex: Exchange) -> None:
    trade_last(ex, "100")

    out = ex.apply(stop("alice", "buy", 2, "105", price="110", coid="s"))

    acc = out[0]
    assert (acc.order_type, acc.stop_price, acc.price) == ("stop", "105.00", "110.00")
    assert ex.book(MKT).bids == [] and ex.book(MKT).asks == []
    view = ex.open_orders("alice")[0]
    assert (view.status, view.type, view.stop_price, view.price) == ("pending", "stop", "105.00", "110.00")
    assert held(ex, "alice", "INR") == notional("110", 2) + fee(notional("110", 2), TAKER_BPS)


def test_a_buy_stop_triggers_when_the_last_trade_reaches_it_and_buys_as_a_capped_market_order(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(stop("alice", "buy", 3, "105", price="106", coid="s"))  # 3
    ex.apply(limit("bob", "sell", 1, "105", "b1"))
    ex.apply(limit("bob", "sell", 1, "106", "b2"))
    ex.apply(limit("bob", "sell", 5, "107", "b3"))

    out = ex.apply(limit("carol", "buy", 1, "105", "c"))  # trades at 105: the stop triggers

    assert kinds(out) == ["Accepted", "Trade", "Triggered", "Trade", "Cancelled"]
    trig = only(out, "Triggered")[0]
    assert (trig.order_id, trig.stop_price, trig.last, trig.qty, trig.order_type) == (
        3,
        "105.00",
        "105.00",
        "3",
        "stop",
    )
    t = only(out, "Trade")[1]
    assert (t.taker_order_id, t.price, t.qty) == (3, "106.00", "1")  # 107 is above its cap
    assert only(out, "Cancelled")[0].reason == "no_liquidity"
    assert held(ex, "alice", "INR") == 0 and ex.open_orders("alice") == []


def test_a_sell_stop_triggers_at_or_below_its_stop_and_sells_at_market(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(stop("alice", "sell", 2, "95", coid="s"))  # 3
    ex.apply(limit("bob", "buy", 5, "90", "b"))

    out = ex.apply(market("carol", "sell", 1))  # at 90 <= 95

    assert kinds(out) == ["Accepted", "Trade", "Triggered", "Trade"]
    assert only(out, "Trade")[1].taker_order_id == 3
    assert held(ex, "alice", "TATA") == 0


def test_a_stop_whose_condition_already_holds_is_refused_would_trigger(ex: Exchange) -> None:
    trade_last(ex, "100")

    assert code_of(ex.apply(stop("alice", "buy", 1, "100", price="101"))) == "would_trigger"
    assert code_of(ex.apply(stop("alice", "sell", 1, "100.05", coid="s2"))) == "would_trigger"
    assert code_of(ex.apply(stop("alice", "buy", 1, "99", price="105", kind="stop_limit", coid="s3"))) == (
        "would_trigger"
    )
    assert ex.open_orders("alice") == []


def test_stop_input_is_checked_with_its_own_reasons(ex: Exchange) -> None:
    assert code_of(ex.apply(stop("alice", "buy", 1, "105"))) == "price_required"  # a stop buy needs its cap
    assert code_of(ex.apply(stop("alice", "buy", 1, "105.01", price="110"))) == "stop_tick_size"
    assert code_of(ex.apply(stop("alice", "buy", 1, "abc", price="110"))) == "bad_stop_price"
    assert code_of(ex.apply(stop("alice", "sell", 1, "90", price="89"))) == "price_not_allowed"
    assert code_of(ex.apply(stop("alice", "sell", 1, "90", kind="stop_limit"))) == "price_required"
    no_stop = Place("alice", "x", MKT, "buy", "stop", "1", 1, price="100")
    assert code_of(ex.apply(no_stop)) == "stop_price_required"
    stray = Place("alice", "y", MKT, "buy", "limit", "1", 1, price="100", stop_price="99")
    assert code_of(ex.apply(stray)) == "stop_price_not_allowed"


def test_stops_triggered_by_one_trade_enter_nearest_first_then_by_time(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(stop("alice", "buy", 1, "103", price="120", coid="far"))  # 3
    ex.apply(stop("bob", "buy", 1, "101", price="120", coid="near1"))  # 4
    ex.apply(stop("alice", "buy", 1, "101", price="120", coid="near2"))  # 5
    ex.apply(limit("carol", "sell", 10, "104", "wall"))  # 6

    out = ex.apply(limit("dave", "buy", 1, "104", "push"))

    assert [e.order_id for e in only(out, "Triggered")] == [4, 5, 3]
    taker_order = [t.taker_order_id for t in only(out, "Trade")]
    assert taker_order == [7, 4, 5, 3]


def test_with_no_trade_before_stops_enter_nearest_to_where_the_market_came_from(ex: Exchange) -> None:
    # No last trade: nothing was refused would_trigger, so the first trade hits stops on both
    # sides. A rise reached the lowest buy stop first and a fall the highest sell stop, so those
    # enter first: the farthest from the trade price first, buys and sells alike, then by time.
    ex.apply(stop("alice", "buy", 1, "103", price="120", coid="b103"))  # 1
    ex.apply(stop("bob", "buy", 1, "101", price="120", coid="b101"))  # 2
    ex.apply(stop("alice", "sell", 1, "104", coid="s104"))  # 3
    ex.apply(stop("bob", "sell", 1, "106", coid="s106"))  # 4
    ex.apply(stop("carol", "buy", 1, "101", price="120", coid="b101-later"))  # 5
    ex.apply(limit("carol", "sell", 1, "104", "first"))  # 6

    out = ex.apply(limit("dave", "buy", 1, "104", "push"))  # the market's first trade, at 104

    assert [e.order_id for e in only(out, "Triggered")] == [2, 5, 4, 1, 3]


def test_a_triggered_stop_can_trigger_others_in_a_cascade(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(stop("alice", "sell", 1, "99", coid="s1"))  # 3
    ex.apply(stop("bob", "sell", 1, "97", coid="s2"))  # 4
    ex.apply(limit("carol", "buy", 1, "99", "b99"))
    ex.apply(limit("carol", "buy", 1, "97", "b97"))
    ex.apply(limit("carol", "buy", 1, "90", "b90"))

    out = ex.apply(market("dave", "sell", 1))  # at 99: triggers s1, which sells at 97: triggers s2

    assert [e.order_id for e in only(out, "Triggered")] == [3, 4]
    assert [t.price for t in only(out, "Trade")] == ["99.00", "97.00", "90.00"]


def test_a_pending_stop_can_be_cancelled_and_amended(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(stop("alice", "buy", 2, "105", price="106", kind="stop_limit", coid="s"))  # 3

    out = ex.apply(amend("alice", 3, price="107", qty=4))
    assert held(ex, "alice", "INR") == notional("107", 4) + fee(notional("107", 4), TAKER_BPS)
    assert (out[0].new_price, out[0].new_qty, out[0].status) == ("107.00", "4", "pending")
    assert ex.open_orders("alice")[0].status == "pending"
    out = ex.apply(cancel("alice", 3))
    assert kinds(out) == ["Cancelled"] and out[0].remaining == "4"
    assert held(ex, "alice", "INR") == 0


def test_a_triggered_stop_limit_rests_at_its_limit_price(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(stop("alice", "sell", 3, "98", price="97", kind="stop_limit", coid="s"))  # 3
    ex.apply(limit("bob", "buy", 1, "98", "b"))

    out = ex.apply(market("carol", "sell", 1))

    assert kinds(out)[-1] == "Triggered"
    assert ex.book(MKT).asks == [("97.00", "3", 1)]
    view = ex.open_orders("alice")[0]
    assert (view.status, view.price, view.type) == ("open", "97.00", "stop_limit")


def test_cancel_all_includes_pending_stops(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(stop("alice", "sell", 1, "95", coid="s"))
    ex.apply(limit("alice", "sell", 1, "120", "l"))

    out = ex.apply(cancel_all("alice"))

    assert [e.order_id for e in out] == [3, 4]
    assert held(ex, "alice", "TATA") == 0


# --- good-till-date ---------------------------------------------------------------------------


def test_a_gtd_order_expires_before_the_first_command_at_or_after_its_time(ex: Exchange) -> None:
    ex.apply(gtd("alice", "sell", 2, "100", T0 + 1000))
    ex.apply(limit("bob", "buy", 1, "100", "early", ts=T0 + 999))  # before: trades with it

    out = ex.apply(limit("carol", "buy", 1, "100", "late", ts=T0 + 1000))

    assert kinds(out) == ["Cancelled", "Accepted"]
    assert (out[0].order_id, out[0].reason, out[0].remaining, out[0].ts) == (1, "expired", "1", T0 + 1000)
    assert held(ex, "alice", "TATA") == 0
    assert ex.book(MKT).asks == []


def test_a_time_command_expires_orders_in_a_quiet_market(ex: Exchange) -> None:
    ex.apply(gtd("alice", "buy", 2, "100", T0 + 50))

    assert ex.next_expiry() == T0 + 50
    assert ex.apply(Time(T0 + 49)) == []
    out = ex.apply(Time(T0 + 50))

    assert kinds(out) == ["Cancelled"] and out[0].reason == "expired"
    assert held(ex, "alice", "INR") == 0 and ex.next_expiry() is None


def test_gtd_input_is_checked_with_its_own_reasons(ex: Exchange) -> None:
    assert code_of(ex.apply(gtd("alice", "sell", 1, "100", T0))) == "expire_in_past"
    assert code_of(ex.apply(gtd("alice", "sell", 1, "100", T0 - 5))) == "expire_in_past"
    no_time = Place("alice", "x", MKT, "sell", "limit", "1", T0, price="100", tif="gtd")
    assert code_of(ex.apply(no_time)) == "bad_expire_at"
    stray = Place("alice", "y", MKT, "sell", "limit", "1", T0, price="100", expire_at=T0 + 5)
    assert code_of(ex.apply(stray)) == "bad_expire_at"
    mkt = Place("alice", "z", MKT, "sell", "market", "1", T0, tif="gtd", expire_at=T0 + 5)
    assert code_of(ex.apply(mkt)) == "bad_tif"


def test_a_pending_gtd_stop_expires_too_and_an_amended_gtd_order_keeps_its_expiry(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(Place("alice", "s", MKT, "sell", "stop", "1", T0, stop_price="90", tif="gtd", expire_at=T0 + 10))
    ex.apply(gtd("bob", "buy", 1, "90", T0 + 10))
    ex.apply(amend("bob", 4, price="91", ts=T0 + 1))

    out = ex.apply(Time(T0 + 10))

    assert [(e.order_id, e.reason) for e in out] == [(3, "expired"), (4, "expired")]
    assert ex.audit() == []


# --- iceberg ----------------------------------------------------------------------------------


def test_an_iceberg_shows_only_its_display_qty_while_its_owner_sees_it_whole(ex: Exchange) -> None:
    out = ex.apply(iceberg("alice", "sell", 10, "100", 3))

    assert out[0].display_qty == "3"
    assert ex.book(MKT).asks == [("100.00", "3", 1)]
    view = ex.open_orders("alice")[0]
    assert (view.qty, view.remaining, view.display_qty, view.visible) == ("10", "10", "3", "3")
    assert held(ex, "alice", "TATA") == shares(10)


def test_a_filled_display_is_refilled_from_the_hidden_part_at_the_back_of_its_level(ex: Exchange) -> None:
    ex.apply(iceberg("alice", "sell", 7, "100", 3))  # 1
    ex.apply(limit("bob", "sell", 2, "100", "b"))  # 2

    first = ex.apply(limit("carol", "buy", 3, "100", "c1"))
    assert [(t.maker_order_id, t.qty, t.maker_remaining) for t in only(first, "Trade")] == [(1, "3", "4")]
    assert ex.book(MKT).asks == [("100.00", "5", 2)]  # bob's 2 + the refilled 3

    second = ex.apply(limit("carol", "buy", 4, "100", "c2"))
    assert [(t.maker_order_id, t.qty) for t in only(second, "Trade")] == [(2, "2"), (1, "2")]


def test_a_large_taker_fills_an_iceberg_through_its_refills(ex: Exchange) -> None:
    ex.apply(iceberg("alice", "sell", 7, "100", 3))

    out = ex.apply(limit("carol", "buy", 7, "100", "c", tif="fok"))

    assert [(t.qty, t.maker_remaining) for t in only(out, "Trade")] == [("3", "4"), ("3", "1"), ("1", "0")]
    assert ex.book(MKT).asks == [] and held(ex, "alice", "TATA") == 0


def test_iceberg_input_is_checked_with_its_own_reasons(ex: Exchange) -> None:
    assert code_of(ex.apply(iceberg("alice", "sell", 5, "100", 6))) == "display_above_qty"
    odd = Place("alice", "o", MKT, "sell", "limit", "5", 1, price="100", display_qty="1.5")
    assert code_of(ex.apply(odd)) == "display_lot_size"
    zero = Place("alice", "z", MKT, "sell", "limit", "5", 1, price="100", display_qty="0")
    assert code_of(ex.apply(zero)) == "bad_display_qty"
    ioc = Place("alice", "i", MKT, "sell", "limit", "5", 1, price="100", tif="ioc", display_qty="1")
    assert code_of(ex.apply(ioc)) == "display_not_allowed"


# --- snapshots ------------------------------------------------------------------------------


def test_every_new_order_type_survives_snapshot_and_restore(ex: Exchange) -> None:
    trade_last(ex, "100")
    ex.apply(stop("alice", "buy", 2, "105", price="110", coid="s1"))
    ex.apply(stop("bob", "sell", 2, "95", price="94", kind="stop_limit", coid="s2"))
    ex.apply(gtd("carol", "buy", 3, "99", T0 + 100))
    ex.apply(iceberg("dave", "sell", 9, "104", 2))
    ex.apply(limit("carol", "buy", 3, "104", "eat"))  # refills the iceberg, triggers nothing yet
    later = [
        amend("carol", 5, qty=2, ts=T0 + 1),
        limit("bob", "buy", 9, "106", "up", ts=T0 + 2),
        market("alice", "sell", 1, ts=T0 + 3),
        Time(T0 + 100),
    ]

    data = ex.snapshot()
    copy = Exchange.restore(data)

    assert copy.snapshot() == data
    for cmd in later:
        assert [encode(e) for e in copy.apply(cmd)] == [encode(e) for e in ex.apply(cmd)]
    assert copy.snapshot() == ex.snapshot()


def test_a_version_1_snapshot_still_restores() -> None:
    v1 = {
        "version": 1,
        "markets": [msgspec.to_builtins(m) for m in Exchange().markets],
        "taker_fee_bps": 10, "maker_fee_bps": 0, "next_order_id": 2, "next_trade_id": 1, "accounts_seq": 1,
        "books": [
            {"symbol": "TATA_INR", "seq": 1, "last_trade": None, "bids": [],
             "asks": [[1, "alice", "a", 2000, 5, 5, False, 1, 5 * 10**8]]},
            {"symbol": "JIO_INR", "seq": 0, "last_trade": None, "bids": [], "asks": []},
        ],
        "fees": {"user": "__fees__", "avail": {"TATA": 0, "INR": 0, "JIO": 0}, "held": {"TATA": 0, "INR": 0, "JIO": 0}},
        "accounts": [{"user": "alice", "avail": {"TATA": 5 * 10**8, "INR": 0, "JIO": 0},
                      "held": {"TATA": 5 * 10**8, "INR": 0, "JIO": 0}}],
    }  # fmt: skip

    ex = Exchange.restore(msgspec.json.encode(v1))

    assert ex.book(MKT).asks == [("100.00", "5", 1)]
    assert ex.open_orders("alice")[0].status == "open"
    bad = dict(v1, version=7)
    with pytest.raises(ValueError, match="version 7"):
        Exchange.restore(msgspec.json.encode(bad))


def test_a_fund_command_past_an_expiry_expires_first() -> None:
    ex = Exchange()
    fund(ex, "alice")
    ex.apply(gtd("alice", "buy", 1, "100", T0 + 5))

    out = ex.apply(Fund("bob", "f", {"INR": "10"}, T0 + 5))

    assert kinds(out) == ["Cancelled", "Funded"]
