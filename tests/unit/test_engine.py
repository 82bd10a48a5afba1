"""stockctl.exchange.engine: order types, matching, settlement and events, scenario by scenario."""

from __future__ import annotations

import msgspec
import pytest

from stockctl.exchange.accounts import FEE_ACCOUNT
from stockctl.exchange.book import ACCOUNTS
from stockctl.exchange.engine import Exchange, UnknownMarket
from stockctl.wire.exchange import DEFAULT_MARKETS, Accepted, Fund, Funded, MarketSpec, Rejected, Trade, encode
from tests.support.engine import (
    MKT,
    avail,
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
    units,
)

TAKER_BPS = 10


@pytest.fixture
def ex() -> Exchange:
    return funded("alice", "bob", "carol")


def book_of(ex: Exchange, market_: str = MKT) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    view = ex.book(market_)
    return view.bids, view.asks


# --- resting and reserving ------------------------------------------------------------------


def test_a_limit_buy_rests_and_reserves_price_times_qty_plus_the_taker_fee(ex: Exchange) -> None:
    before = avail(ex, "alice", "INR")

    events = ex.apply(limit("alice", "buy", 10, "100.05", "a1", ts=42))

    assert kinds(events) == ["Accepted"]
    acc = events[0]
    assert (acc.market, acc.user, acc.order_id, acc.client_order_id, acc.ts) == (MKT, "alice", 1, "a1", 42)
    assert (acc.side, acc.order_type, acc.tif, acc.qty, acc.price) == ("buy", "limit", "gtc", "10", "100.05")
    need = notional("100.05", 10) + fee(notional("100.05", 10), TAKER_BPS)
    assert held(ex, "alice", "INR") == need
    assert avail(ex, "alice", "INR") == before - need
    assert book_of(ex) == ([("100.05", "10", 1)], [])


def test_a_limit_sell_reserves_its_quantity_in_the_base_asset(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 7, "101"))

    assert held(ex, "alice", "TATA") == shares(7)
    assert avail(ex, "alice", "TATA") == shares(1000 - 7)
    assert held(ex, "alice", "INR") == 0
    assert book_of(ex) == ([], [("101.00", "7", 1)])


def test_prices_and_quantities_are_echoed_in_canonical_form(ex: Exchange) -> None:
    events = ex.apply(limit("alice", "buy", "0010", "100.5000"))

    assert (events[0].qty, events[0].price) == ("10", "100.50")


# --- matching -------------------------------------------------------------------------------


def test_a_crossing_buy_fills_at_the_makers_price_and_settles_both_sides(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 10, "100.05", "ask"))
    inr = {u: total(ex, u, "INR") for u in ("alice", "bob")}

    events = ex.apply(limit("bob", "buy", 10, "101", "bid"))

    assert kinds(events) == ["Accepted", "Trade"]
    t = events[1]
    assert (t.price, t.qty, t.taker_side) == ("100.05", "10", "buy")
    assert (t.maker_user, t.maker_order_id, t.maker_client_order_id, t.maker_remaining) == ("alice", 1, "ask", "0")
    assert (t.taker_user, t.taker_order_id, t.taker_client_order_id, t.taker_remaining) == ("bob", 2, "bid", "0")
    paid = notional("100.05", 10)
    taker_fee = fee(paid, TAKER_BPS)
    assert units(t.taker_fee) == taker_fee and t.maker_fee == "0"
    assert total(ex, "bob", "INR") == inr["bob"] - paid - taker_fee
    assert total(ex, "alice", "INR") == inr["alice"] + paid
    assert total(ex, "bob", "TATA") == shares(1010)
    assert total(ex, "alice", "TATA") == shares(990)
    assert ex.balances(FEE_ACCOUNT)["INR"] == ("1.0005", "0")
    # Nothing stays reserved once both orders are done: the price improvement came back too.
    assert held(ex, "bob", "INR") == 0 and held(ex, "alice", "TATA") == 0
    assert book_of(ex) == ([], [])
    assert ex.book(MKT).last_trade == "100.05"


def test_a_partial_fill_leaves_the_maker_resting_with_its_remainder(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 10, "100"))

    events = ex.apply(limit("bob", "buy", 4, "100"))

    t = only(events, "Trade")[0]
    assert (t.qty, t.maker_remaining, t.taker_remaining) == ("4", "6", "0")
    assert book_of(ex) == ([], [("100.00", "6", 1)])
    assert held(ex, "alice", "TATA") == shares(6)
    assert [(o.order_id, o.remaining, o.qty) for o in ex.open_orders("alice")] == [(1, "6", "10")]


def test_a_partially_filled_taker_rests_its_remainder_reserving_only_for_it(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 3, "99"))

    events = ex.apply(limit("bob", "buy", 10, "100"))

    t = only(events, "Trade")[0]
    assert (t.price, t.qty, t.taker_remaining) == ("99.00", "3", "7")
    assert book_of(ex) == ([("100.00", "7", 1)], [])
    rest = notional("100", 7)
    assert held(ex, "bob", "INR") == rest + fee(rest, TAKER_BPS)


def test_a_buy_sweeps_ask_levels_best_first_each_at_its_own_price(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 2, "100.10"))
    ex.apply(limit("carol", "sell", 3, "100.00"))
    ex.apply(limit("alice", "sell", 4, "100.05"))
    ex.apply(limit("carol", "sell", 5, "100.20"))
    bob_inr = total(ex, "bob", "INR")

    events = ex.apply(limit("bob", "buy", 8, "100.10"))

    trades = only(events, "Trade")
    assert [(t.price, t.qty, t.maker_order_id) for t in trades] == [
        ("100.00", "3", 2),
        ("100.05", "4", 3),
        ("100.10", "1", 1),
    ]
    assert [t.trade_id for t in trades] == [1, 2, 3]
    assert [t.taker_remaining for t in trades] == ["5", "1", "0"]
    cost = notional("100.00", 3) + notional("100.05", 4) + notional("100.10", 1)
    fees = fee(notional("100.00", 3), 10) + fee(notional("100.05", 4), 10) + fee(notional("100.10", 1), 10)
    assert total(ex, "bob", "INR") == bob_inr - cost - fees
    assert book_of(ex) == ([], [("100.10", "1", 1), ("100.20", "5", 1)])
    assert ex.book(MKT).last_trade == "100.10"


def test_a_sell_sweeps_bid_levels_highest_first(ex: Exchange) -> None:
    ex.apply(limit("alice", "buy", 2, "99"))
    ex.apply(limit("carol", "buy", 2, "101"))
    ex.apply(limit("alice", "buy", 2, "100"))

    events = ex.apply(limit("bob", "sell", 5, "99.50"))

    assert [(t.price, t.qty) for t in only(events, "Trade")] == [("101.00", "2"), ("100.00", "2")]
    assert book_of(ex) == ([("99.00", "2", 1)], [("99.50", "1", 1)])


def test_orders_at_one_price_fill_in_time_order(ex: Exchange) -> None:
    first = ex.apply(limit("alice", "sell", 2, "100", "first"))[0].order_id
    second = ex.apply(limit("carol", "sell", 2, "100", "second"))[0].order_id
    third = ex.apply(limit("alice", "sell", 2, "100", "third"))[0].order_id

    events = ex.apply(limit("bob", "buy", 5, "100"))

    fills = [(t.maker_order_id, t.qty) for t in only(events, "Trade")]
    assert fills == [(first, "2"), (second, "2"), (third, "1")]
    assert book_of(ex) == ([], [("100.00", "1", 1)])


def test_a_cancelled_order_loses_nothing_of_the_queue_for_the_others(ex: Exchange) -> None:
    a = ex.apply(limit("alice", "sell", 1, "100"))[0].order_id
    b = ex.apply(limit("carol", "sell", 1, "100"))[0].order_id
    c = ex.apply(limit("alice", "sell", 1, "100", "again"))[0].order_id
    ex.apply(cancel("carol", b))

    events = ex.apply(limit("bob", "buy", 2, "100"))

    assert [t.maker_order_id for t in only(events, "Trade")] == [a, c]
    assert book_of(ex) == ([], [])


# --- time in force, post-only -------------------------------------------------------------


def test_ioc_fills_what_it_can_and_cancels_the_rest(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 3, "100"))
    inr = total(ex, "bob", "INR")

    events = ex.apply(limit("bob", "buy", 5, "100", tif="ioc"))

    assert kinds(events) == ["Accepted", "Trade", "Cancelled"]
    assert (events[2].reason, events[2].remaining, events[2].order_id) == ("ioc", "2", events[0].order_id)
    assert book_of(ex) == ([], [])
    assert held(ex, "bob", "INR") == 0
    assert total(ex, "bob", "INR") == inr - notional("100", 3) - fee(notional("100", 3), 10)


def test_ioc_with_nothing_to_match_is_cancelled_whole(ex: Exchange) -> None:
    events = ex.apply(limit("bob", "buy", 5, "100", tif="ioc"))

    assert kinds(events) == ["Accepted", "Cancelled"]
    assert (events[1].reason, events[1].remaining) == ("ioc", "5")
    assert held(ex, "bob", "INR") == 0


def test_fok_that_cannot_fill_completely_touches_nothing(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 3, "100"))
    ex.apply(limit("carol", "sell", 3, "100.50"))
    before_book, before_bal = ex.book(MKT), ex.balances("bob")

    events = ex.apply(limit("bob", "buy", 5, "100.25", tif="fok"))  # 3 within the limit, 6 in all

    assert kinds(events) == ["Accepted", "Cancelled"]
    assert (events[1].reason, events[1].remaining) == ("fok", "5")
    after = ex.book(MKT)
    assert (after.bids, after.asks, after.last_trade) == (before_book.bids, before_book.asks, None)
    assert ex.balances("bob") == before_bal


def test_fok_that_can_fill_completely_fills(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 3, "100"))
    ex.apply(limit("carol", "sell", 3, "100.50"))

    events = ex.apply(limit("bob", "buy", 5, "100.50", tif="fok"))

    assert [(t.price, t.qty) for t in only(events, "Trade")] == [("100.00", "3"), ("100.50", "2")]
    assert not only(events, "Cancelled")
    assert book_of(ex) == ([], [("100.50", "1", 1)])


def test_fok_does_not_count_the_users_own_orders_as_liquidity(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 3, "100"))
    ex.apply(limit("bob", "sell", 3, "100"))

    events = ex.apply(limit("bob", "buy", 5, "100", tif="fok"))

    assert kinds(events) == ["Accepted", "Cancelled"]
    assert events[1].reason == "fok"
    assert book_of(ex) == ([], [("100.00", "6", 2)])


def test_post_only_that_would_cross_is_cancelled_without_trading(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 3, "100"))

    events = ex.apply(limit("bob", "buy", 2, "100", post_only=True))

    assert kinds(events) == ["Accepted", "Cancelled"]
    assert (events[0].post_only, events[1].reason, events[1].remaining) == (True, "post_only", "2")
    assert book_of(ex) == ([], [("100.00", "3", 1)])
    assert held(ex, "bob", "INR") == 0


def test_post_only_that_does_not_cross_rests(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 3, "100"))

    events = ex.apply(limit("bob", "buy", 2, "99.95", post_only=True))

    assert kinds(events) == ["Accepted"]
    assert book_of(ex) == ([("99.95", "2", 1)], [("100.00", "3", 1)])
    assert ex.open_orders("bob")[0].post_only is True


# --- self-trade prevention ------------------------------------------------------------------


def test_self_trade_cancels_the_resting_order_and_matching_continues(ex: Exchange) -> None:
    own = ex.apply(limit("alice", "sell", 5, "100", "mine"))[0].order_id
    other = ex.apply(limit("bob", "sell", 5, "100"))[0].order_id

    events = ex.apply(limit("alice", "buy", 8, "100", "incoming"))

    assert kinds(events) == ["Accepted", "Cancelled", "Trade"]
    stp, trade = events[1], events[2]
    assert (stp.order_id, stp.reason, stp.remaining, stp.user) == (own, "self_trade", "5", "alice")
    assert (trade.maker_order_id, trade.qty, trade.taker_remaining) == (other, "5", "3")
    assert book_of(ex) == ([("100.00", "3", 1)], [])
    assert held(ex, "alice", "TATA") == 0  # the cancelled ask's shares are free again
    assert total(ex, "alice", "TATA") == shares(1005)


def test_a_self_trade_alone_leaves_the_incoming_order_resting(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 5, "100"))

    events = ex.apply(limit("alice", "buy", 2, "100"))

    assert kinds(events) == ["Accepted", "Cancelled"]
    assert events[1].reason == "self_trade"
    assert book_of(ex) == ([("100.00", "2", 1)], [])


# --- market orders --------------------------------------------------------------------------


def test_a_market_buy_sweeps_and_cancels_the_unfilled_remainder_for_lack_of_liquidity(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 2, "100"))
    ex.apply(limit("carol", "sell", 2, "101"))

    events = ex.apply(market("bob", "buy", 6))

    assert kinds(events) == ["Accepted", "Trade", "Trade", "Cancelled"]
    assert events[0].price is None and events[0].order_type == "market"
    assert [(t.price, t.qty) for t in only(events, "Trade")] == [("100.00", "2"), ("101.00", "2")]
    assert (events[3].reason, events[3].remaining) == ("no_liquidity", "2")
    assert held(ex, "bob", "INR") == 0
    assert book_of(ex) == ([], [])


def test_a_market_buy_fills_only_what_the_buyers_funds_cover() -> None:
    ex = Exchange()
    fund(ex, "alice")
    fund(ex, "bob", inr="350")
    ex.apply(limit("alice", "sell", 2, "100"))
    ex.apply(limit("alice", "sell", 5, "120"))
    # 2 x 100 = 200 + 0.2 fee; a third at 120 would make 320.32 + ... <= 350; a fourth 440 > 350.

    events = ex.apply(market("bob", "buy", 5))

    assert [(t.price, t.qty) for t in only(events, "Trade")] == [("100.00", "2"), ("120.00", "1")]
    assert (events[-1].reason, events[-1].remaining) == ("funds", "2")
    spent = notional("100", 2) + fee(notional("100", 2), 10) + notional("120", 1) + fee(notional("120", 1), 10)
    assert total(ex, "bob", "INR") == units("350") - spent
    assert held(ex, "bob", "INR") == 0


def test_a_market_buy_that_cannot_pay_for_one_lot_is_rejected_with_the_amounts() -> None:
    ex = Exchange()
    fund(ex, "alice")
    fund(ex, "bob", inr="100")
    ex.apply(limit("alice", "sell", 2, "100"))

    events = ex.apply(market("bob", "buy", 1))

    assert kinds(events) == ["Rejected"]
    assert events[0].code == "funds"
    assert "100.1 INR" in events[0].reason and "100 INR is available" in events[0].reason


def test_a_market_order_with_no_other_orders_to_match_is_rejected(ex: Exchange) -> None:
    ex.apply(limit("bob", "sell", 3, "100"))  # bob's own ask does not count

    events = ex.apply(market("bob", "buy", 1))

    assert kinds(events) == ["Rejected"]
    assert events[0].code == "no_liquidity"
    assert book_of(ex) == ([], [("100.00", "3", 1)])


def test_a_market_sell_fills_the_bids_and_never_rests(ex: Exchange) -> None:
    ex.apply(limit("alice", "buy", 2, "100"))
    ex.apply(limit("carol", "buy", 1, "99"))

    events = ex.apply(market("bob", "sell", 4))

    assert [(t.price, t.qty, t.taker_side) for t in only(events, "Trade")] == [
        ("100.00", "2", "sell"),
        ("99.00", "1", "sell"),
    ]
    assert (events[-1].reason, events[-1].remaining) == ("no_liquidity", "1")
    got = notional("100", 2) - fee(notional("100", 2), 10) + notional("99", 1) - fee(notional("99", 1), 10)
    assert total(ex, "bob", "INR") == units("1000000") + got
    assert total(ex, "bob", "TATA") == shares(997)
    assert book_of(ex) == ([], [])


def test_a_market_fok_that_cannot_fill_is_cancelled_whole(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 2, "100"))

    events = ex.apply(market("bob", "buy", 3, tif="fok"))

    assert kinds(events) == ["Accepted", "Cancelled"]
    assert events[1].reason == "fok"
    assert book_of(ex) == ([], [("100.00", "2", 1)])


# --- funds ----------------------------------------------------------------------------------


def test_a_buy_beyond_the_users_quote_is_rejected_with_required_and_available() -> None:
    ex = Exchange()
    fund(ex, "bob", inr="500")

    events = ex.apply(limit("bob", "buy", 10, "100"))

    assert kinds(events) == ["Rejected"]
    r = events[0]
    assert r.code == "funds"
    assert "INR" in r.reason and "1001 INR" in r.reason and "500 INR is available" in r.reason
    assert ex.balances("bob")["INR"] == ("500", "0")


def test_a_sell_beyond_the_users_shares_is_rejected_with_the_amounts() -> None:
    ex = Exchange()
    fund(ex, "bob", tata="3")

    events = ex.apply(limit("bob", "sell", 5, "100"))

    assert events[0].code == "funds"
    assert "5 TATA" in events[0].reason and "3 TATA is available" in events[0].reason


def test_an_unfunded_user_has_nothing_to_spend(ex: Exchange) -> None:
    events = ex.apply(limit("dave", "buy", 1, "100"))

    assert events[0].code == "funds"
    assert "0 INR is available" in events[0].reason
    assert not ex.is_funded("dave")


def test_reserved_funds_cannot_be_spent_twice() -> None:
    ex = Exchange()
    fund(ex, "bob", inr="1500")
    ex.apply(limit("bob", "buy", 10, "100"))  # reserves 1001

    events = ex.apply(limit("bob", "buy", 5, "100", "second"))  # needs 500.5, 499 left

    assert events[0].code == "funds"
    assert "499 INR is available" in events[0].reason


def test_maker_fees_are_charged_and_a_resting_buy_reserves_the_larger_fee() -> None:
    ex = Exchange(taker_fee_bps=10, maker_fee_bps=20)
    fund(ex, "alice")
    fund(ex, "bob")
    ex.apply(limit("alice", "buy", 10, "100"))
    n = notional("100", 10)
    assert held(ex, "alice", "INR") == n + fee(n, 20)

    events = ex.apply(limit("bob", "sell", 4, "100"))

    t = only(events, "Trade")[0]
    part = notional("100", 4)
    assert (units(t.maker_fee), units(t.taker_fee)) == (fee(part, 20), fee(part, 10))
    assert total(ex, "alice", "INR") == units("1000000") - part - fee(part, 20)
    assert total(ex, "bob", "INR") == units("1000000") + part - fee(part, 10)
    rest = notional("100", 6)
    assert held(ex, "alice", "INR") == rest + fee(rest, 20)
    assert units(ex.balances(FEE_ACCOUNT)["INR"][0]) == fee(part, 20) + fee(part, 10)


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_removes_the_order_and_releases_its_reservation(ex: Exchange) -> None:
    oid = ex.apply(limit("bob", "buy", 10, "100", "b"))[0].order_id

    events = ex.apply(cancel("bob", oid, ts=9))

    assert kinds(events) == ["Cancelled"]
    c = events[0]
    assert (c.order_id, c.client_order_id, c.reason, c.remaining, c.ts, c.user) == (oid, "b", "user", "10", 9, "bob")
    assert ex.balances("bob")["INR"] == ("1000000", "0")
    assert book_of(ex) == ([], [])
    assert ex.open_orders("bob") == []


def test_cancel_of_a_partly_filled_order_reports_its_remainder(ex: Exchange) -> None:
    oid = ex.apply(limit("alice", "sell", 10, "100"))[0].order_id
    ex.apply(limit("bob", "buy", 4, "100"))

    events = ex.apply(cancel("alice", oid))

    assert events[0].remaining == "6"
    assert ex.balances("alice")["TATA"] == ("996", "0")


def test_cancel_of_a_filled_order_is_unknown_order(ex: Exchange) -> None:
    oid = ex.apply(limit("alice", "sell", 1, "100"))[0].order_id
    ex.apply(limit("bob", "buy", 1, "100"))

    events = ex.apply(cancel("alice", oid))

    assert kinds(events) == ["Rejected"]
    assert events[0].code == "unknown_order"


def test_cancel_of_someone_elses_order_looks_exactly_like_a_missing_one(ex: Exchange) -> None:
    theirs = ex.apply(limit("alice", "sell", 1, "100"))[0].order_id
    missing = theirs + 1000

    other = ex.apply(cancel("bob", theirs))[0]
    absent = ex.apply(cancel("bob", missing))[0]

    assert other.code == absent.code == "unknown_order"
    assert other.reason.replace(str(theirs), "N") == absent.reason.replace(str(missing), "N")
    assert book_of(ex) == ([], [("100.00", "1", 1)])


def test_cancel_naming_the_wrong_market_is_unknown_order(ex: Exchange) -> None:
    oid = ex.apply(limit("alice", "sell", 1, "100"))[0].order_id

    events = ex.apply(cancel("alice", oid, "JIO_INR"))

    assert (events[0].code, events[0].market) == ("unknown_order", "JIO_INR")
    assert book_of(ex) == ([], [("100.00", "1", 1)])


def test_cancel_all_cancels_the_users_orders_in_that_market_oldest_first(ex: Exchange) -> None:
    a = ex.apply(limit("bob", "buy", 1, "99"))[0].order_id
    ex.apply(limit("bob", "buy", 1, "50", market="JIO_INR"))
    ex.apply(limit("alice", "buy", 1, "98"))
    b = ex.apply(limit("bob", "sell", 2, "101"))[0].order_id

    events = ex.apply(cancel_all("bob"))

    assert [(e.order_id, e.reason) for e in events] == [(a, "user"), (b, "user")]
    assert book_of(ex) == ([("98.00", "1", 1)], [])
    assert [o.market for o in ex.open_orders("bob")] == ["JIO_INR"]


def test_cancel_all_with_nothing_open_is_rejected(ex: Exchange) -> None:
    events = ex.apply(cancel_all("bob"))

    assert (kinds(events), events[0].code) == (["Rejected"], "no_open_orders")


# --- client order ids -----------------------------------------------------------------------


def test_a_client_order_id_in_use_by_a_live_order_is_rejected(ex: Exchange) -> None:
    ex.apply(limit("bob", "buy", 1, "99", "same"))

    events = ex.apply(limit("bob", "buy", 1, "98", "same", market="JIO_INR"))

    assert (events[0].code, events[0].client_order_id) == ("duplicate_client_order_id", "same")
    assert len(ex.open_orders("bob")) == 1


def test_a_client_order_id_is_free_again_once_its_order_is_done(ex: Exchange) -> None:
    oid = ex.apply(limit("bob", "buy", 1, "99", "same"))[0].order_id
    ex.apply(cancel("bob", oid))

    events = ex.apply(limit("bob", "buy", 1, "98", "same"))

    assert kinds(events) == ["Accepted"]


def test_another_user_may_use_the_same_client_order_id(ex: Exchange) -> None:
    ex.apply(limit("bob", "buy", 1, "99", "same"))

    events = ex.apply(limit("alice", "buy", 1, "99", "same"))

    assert kinds(events) == ["Accepted"]


# --- fund -----------------------------------------------------------------------------------


def test_fund_credits_once_and_says_so_on_accounts() -> None:
    ex = Exchange()

    first = ex.apply(Fund("zoe", "r1", {"TATA": "5", "INR": "1000.50"}, 7))
    again = ex.apply(Fund("zoe", "r2", {"INR": "1"}, 8))

    assert first == [Funded(1, 7, ACCOUNTS, "zoe", {"INR": "1000.5", "TATA": "5"})]
    assert (again[0].code, again[0].market, again[0].seq, again[0].client_order_id) == (
        "already_funded",
        ACCOUNTS,
        2,
        "r2",
    )
    assert ex.balances("zoe")["INR"] == ("1000.5", "0")
    assert ex.totals()["INR"] == units("1000.5")


@pytest.mark.parametrize(
    ("amounts", "code"),
    [
        ({}, "bad_amount"),
        ({"INR": "0"}, "bad_amount"),
        ({"INR": "-5"}, "bad_amount"),
        ({"INR": "1e6"}, "bad_amount"),
        ({"INR": "NaN"}, "bad_amount"),
        ({"INR": "0.000000001"}, "bad_amount"),
        ({"USD": "5"}, "unknown_asset"),
    ],
)
def test_bad_fund_amounts_are_rejected_and_leave_the_user_unfunded(amounts: dict[str, str], code: str) -> None:
    ex = Exchange()

    events = ex.apply(Fund("zoe", "r1", amounts, 1))

    assert (kinds(events), events[0].code) == (["Rejected"], code)
    assert not ex.is_funded("zoe")
    assert ex.totals() == dict.fromkeys(ex.assets, 0)


def test_the_fee_account_cannot_be_funded_or_trade(ex: Exchange) -> None:
    funded = ex.apply(Fund(FEE_ACCOUNT, "r", {"INR": "5"}, 1))
    placed = ex.apply(limit(FEE_ACCOUNT, "buy", 1, "100"))

    assert funded[0].code == "bad_user" and placed[0].code == "bad_user"


# --- events, sequences, ids -----------------------------------------------------------------


def test_each_market_numbers_its_events_and_ids_are_global(ex: Exchange) -> None:
    out = []
    out += ex.apply(limit("alice", "sell", 1, "100"))
    out += ex.apply(limit("bob", "buy", 1, "50", market="JIO_INR"))
    out += ex.apply(limit("bob", "buy", 1, "100"))  # accepted + trade
    out += ex.apply(limit("bob", "buy", 1, "100.001"))  # rejected: still a TATA_INR event
    out += ex.apply(limit("carol", "sell", 1, "50", market="JIO_INR"))

    tata = [e.seq for e in out if e.market == MKT]
    jio = [e.seq for e in out if e.market == "JIO_INR"]
    assert tata == [1, 2, 3, 4]  # accepted, accepted + trade, rejected
    assert jio == [1, 2, 3]
    assert [e.order_id for e in out if isinstance(e, Accepted)] == [1, 2, 3, 4]
    assert [e.trade_id for e in out if isinstance(e, Trade)] == [1, 2]
    assert ex.book(MKT).seq == 4 and ex.book("JIO_INR").seq == 3
    assert ex.seq(ACCOUNTS) == 3  # three Funds in the fixture


def test_every_event_carries_the_commands_ts(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 5, "100", ts=10))
    ex.apply(limit("bob", "sell", 1, "100", ts=11))

    events = ex.apply(limit("alice", "buy", 8, "100", ts=12, tif="ioc"))

    assert {e.ts for e in events} == {12}
    assert kinds(events) == ["Accepted", "Cancelled", "Trade", "Cancelled"]


def test_a_command_naming_an_unknown_market_is_rejected_on_accounts_listing_the_markets(ex: Exchange) -> None:
    events = ex.apply(limit("bob", "buy", 1, "100", market="ACME_INR"))

    r = events[0]
    assert isinstance(r, Rejected)
    assert (r.code, r.market, r.seq) == ("unknown_market", ACCOUNTS, 4)
    assert "ACME_INR" in r.reason and "TATA_INR" in r.reason and "JIO_INR" in r.reason


def test_the_same_commands_give_the_same_bytes() -> None:
    def run() -> list[bytes]:
        ex = Exchange()
        fund(ex, "alice")
        fund(ex, "bob")
        cmds = [
            limit("alice", "sell", 3, "100"),
            limit("alice", "sell", 3, "100.05"),
            limit("bob", "buy", 4, "100.05"),
            market("bob", "buy", 9),
            limit("bob", "buy", 2, "99"),
            cancel("bob", 5),
        ]
        return [encode(e) for c in cmds for e in ex.apply(c)]

    assert run() == run()


# --- queries, snapshot ----------------------------------------------------------------------


def test_book_aggregates_levels_best_first_and_honours_depth(ex: Exchange) -> None:
    ex.apply(limit("alice", "buy", 1, "99"))
    ex.apply(limit("bob", "buy", 2, "99"))
    ex.apply(limit("alice", "buy", 3, "98"))
    ex.apply(limit("carol", "sell", 4, "101"))
    ex.apply(limit("carol", "sell", 5, "102", "c2"))

    full = ex.book(MKT)
    top = ex.book(MKT, depth=1)

    assert full.bids == [("99.00", "3", 2), ("98.00", "3", 1)]
    assert full.asks == [("101.00", "4", 1), ("102.00", "5", 1)]
    assert (top.bids, top.asks) == ([("99.00", "3", 2)], [("101.00", "4", 1)])
    assert ex.book(MKT, depth=0).bids == []
    assert full.last_trade is None


def test_open_orders_show_the_users_orders_oldest_first(ex: Exchange) -> None:
    ex.apply(limit("bob", "buy", 2, "99", "x", ts=5))
    ex.apply(limit("bob", "sell", 1, "60", "y", market="JIO_INR", ts=6))

    views = ex.open_orders("bob")

    assert [(v.order_id, v.client_order_id, v.market, v.side, v.type, v.price, v.qty, v.remaining) for v in views] == [
        (1, "x", MKT, "buy", "limit", "99.00", "2", "2"),
        (2, "y", "JIO_INR", "sell", "limit", "60.00", "1", "1"),
    ]
    assert [v.ts for v in views] == [5, 6]
    assert [v.order_id for v in ex.open_orders("bob", "JIO_INR")] == [2]
    assert ex.open_orders("nobody") == []


def test_queries_on_an_unknown_market_raise_a_clear_error(ex: Exchange) -> None:
    with pytest.raises(UnknownMarket, match="TATA_INR"):
        ex.book("NOPE")


def test_snapshot_restore_round_trips_and_continues_identically(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 2, "100", "a"))
    ex.apply(limit("carol", "sell", 2, "100", "c"))
    ex.apply(limit("alice", "sell", 2, "100", "a2"))
    ex.apply(limit("bob", "buy", 3, "99"))
    ex.apply(cancel("carol", 2))
    later = [
        limit("bob", "buy", 5, "100", "sweep", ts=20),
        market("carol", "sell", 2, ts=21),
        cancel_all("alice", ts=22),
    ]

    data = ex.snapshot()
    copy = Exchange.restore(data)

    assert copy.snapshot() == data
    assert copy.totals() == ex.totals()
    for cmd in later:
        assert [encode(e) for e in copy.apply(cmd)] == [encode(e) for e in ex.apply(cmd)]
    assert copy.snapshot() == ex.snapshot()


def test_restore_refuses_an_inconsistent_snapshot(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 2, "100"))
    doc = msgspec.json.decode(ex.snapshot())
    doc["accounts"][0]["held"]["TATA"] += 1  # reserved that no order explains

    with pytest.raises(ValueError, match="inconsistent snapshot"):
        Exchange.restore(msgspec.json.encode(doc))
    with pytest.raises(ValueError, match="not an exchange snapshot"):
        Exchange.restore(b"{}")


# --- construction ---------------------------------------------------------------------------


def test_markets_whose_tick_times_lot_is_not_whole_units_are_refused() -> None:
    spec = MarketSpec("X_Y", "X", "Y", "0.00001", "0.0001", "0.0001", "10", "100")

    with pytest.raises(ValueError, match="not a whole number"):
        Exchange([spec])


@pytest.mark.parametrize(
    "spec",
    [
        MarketSpec("X_Y", "X", "X", "0.01", "1", "1", "10", "100"),
        MarketSpec("X_Y", "X", "Y", "0", "1", "1", "10", "100"),
        MarketSpec("X_Y", "X", "Y", "0.01", "1", "5", "1", "100"),
        MarketSpec("X_Y", "X", "Y", "0.01", "1", "1", "10", "100.001"),
        MarketSpec(ACCOUNTS, "X", "Y", "0.01", "1", "1", "10", "100"),
    ],
)
def test_bad_market_specs_are_refused(spec: MarketSpec) -> None:
    with pytest.raises(ValueError):
        Exchange([spec])


def test_fractional_lots_settle_exactly() -> None:
    spec = MarketSpec("BTC_INR", "BTC", "INR", "0.01", "0.001", "0.001", "100", "10000000")
    ex = Exchange([spec], taker_fee_bps=0)
    ex.apply(Fund("a", "r", {"BTC": "1"}, 0))
    ex.apply(Fund("b", "r", {"INR": "100000"}, 0))

    ex.apply(limit("a", "sell", "0.015", "2500000.01", market="BTC_INR"))
    events = ex.apply(limit("b", "buy", "0.015", "2500000.01", market="BTC_INR"))

    assert only(events, "Trade")[0].qty == "0.015"
    # 0.015 x 2,500,000.01 = 37,500.00015 INR, exactly.
    assert ex.balances("a") == {"BTC": ("0.985", "0"), "INR": ("37500.00015", "0")}
    assert ex.balances("b") == {"BTC": ("0.015", "0"), "INR": ("62499.99985", "0")}


def test_fee_bps_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        Exchange(taker_fee_bps=-1)
    with pytest.raises(ValueError):
        Exchange(maker_fee_bps=10_001)


def test_default_markets_build() -> None:
    ex = Exchange()

    assert ex.markets == DEFAULT_MARKETS
    assert ex.market_spec("JIO_INR").base == "JIO"
    assert ex.assets == ("TATA", "INR", "JIO")


# --- a few more edges -----------------------------------------------------------------------


def test_a_market_buy_that_runs_out_of_book_cancels_the_buyers_own_asks_on_the_way(ex: Exchange) -> None:
    ex.apply(limit("alice", "sell", 2, "100"))
    own = ex.apply(limit("bob", "sell", 3, "101"))[0].order_id

    events = ex.apply(market("bob", "buy", 5))

    assert kinds(events) == ["Accepted", "Trade", "Cancelled", "Cancelled"]
    assert (events[2].order_id, events[2].reason) == (own, "self_trade")
    assert (events[3].reason, events[3].remaining) == ("no_liquidity", "3")
    assert book_of(ex) == ([], [])
    assert held(ex, "bob", "TATA") == 0


def test_a_market_buy_capped_by_funds_stops_there_and_leaves_later_asks_alone() -> None:
    ex = Exchange()
    fund(ex, "alice")
    fund(ex, "bob", inr="150")
    ex.apply(limit("alice", "sell", 1, "100"))
    own = ex.apply(limit("bob", "sell", 1, "100.05"))[0].order_id
    ex.apply(limit("alice", "sell", 1, "100.10", "a2"))

    events = ex.apply(market("bob", "buy", 3))

    assert kinds(events) == ["Accepted", "Trade", "Cancelled"]
    assert (events[2].reason, events[2].remaining) == ("funds", "2")
    assert [o.order_id for o in ex.open_orders("bob")] == [own]


def test_time_priority_survives_many_cancels_in_one_level(ex: Exchange) -> None:
    ids = [ex.apply(limit("alice" if i % 2 else "carol", "sell", 1, "100", f"o{i}"))[0].order_id for i in range(60)]
    for i, oid in enumerate(ids):
        if i % 5:  # cancel four in five, the queue is compacted on the way
            ex.apply(cancel("alice" if i % 2 else "carol", oid))
    kept = [oid for i, oid in enumerate(ids) if i % 5 == 0]
    assert book_of(ex) == ([], [("100.00", "12", 12)])

    events = ex.apply(limit("bob", "buy", 12, "100"))

    assert [t.maker_order_id for t in only(events, "Trade")] == kept
    assert ex.audit() == []


def test_the_fee_account_collects_exactly_the_fees_in_the_trades() -> None:
    ex = Exchange(taker_fee_bps=25, maker_fee_bps=5)
    for user in ("alice", "bob"):
        fund(ex, user)
    out = []
    out += ex.apply(limit("alice", "sell", 3, "100.05"))
    out += ex.apply(limit("bob", "buy", 5, "100.10"))
    out += ex.apply(market("alice", "sell", 2))

    fees = sum(units(t.maker_fee) + units(t.taker_fee) for t in only(out, "Trade"))
    assert fees > 0
    available, reserved = ex.balances(FEE_ACCOUNT)["INR"]
    assert (units(available), reserved) == (fees, "0")
    assert ex.totals()["INR"] == units("2000000")
