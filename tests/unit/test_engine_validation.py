"""stockctl.exchange.engine: every bad command is a Rejected event with a specific reason and code."""

from __future__ import annotations

from typing import Any

import pytest

from stockctl.exchange.book import ACCOUNTS
from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import Cancel, CancelAll, MarketSpec, Place, Rejected
from tests.support.engine import MKT, funded, kinds, limit


def make_place(**overrides: Any) -> Place:
    fields: dict[str, Any] = {
        "user": "bob",
        "client_order_id": "c1",
        "market": MKT,
        "side": "buy",
        "type": "limit",
        "qty": "1",
        "ts": 5,
        "price": "100",
        "tif": "gtc",
        "post_only": False,
    }
    fields.update(overrides)
    return Place(**fields)


@pytest.fixture
def ex() -> Exchange:
    return funded("bob")


def rejected(ex: Exchange, cmd: object) -> Rejected:
    events = ex.apply(cmd)  # type: ignore[arg-type]
    assert kinds(events) == ["Rejected"], events
    return events[0]


@pytest.mark.parametrize(
    ("overrides", "code", "reason"),
    [
        ({"price": "100.503"}, "tick_size", "price 100.503 is not a multiple of the tick size 0.05"),
        ({"price": "100.07"}, "tick_size", "price 100.07 is not a multiple of the tick size 0.05"),
        ({"qty": "1.5"}, "lot_size", "quantity 1.5 is not a multiple of the lot size 1"),
        ({"qty": "100001"}, "max_qty", "quantity 100001 is above the maximum 100000 for TATA_INR"),
        ({"price": "1000000.05"}, "price_range", "price 1000000.05 is above the maximum 1000000 for TATA_INR"),
        ({"price": None}, "price_required", "a limit order needs a price"),
        ({"type": "market", "price": "100"}, "price_not_allowed", "a market order takes no price"),
        ({"type": "market", "price": None, "post_only": True}, "post_only_market", "post_only applies to limit"),
        ({"post_only": True, "tif": "ioc"}, "post_only_tif", "a post-only order must be gtc or gtd"),
        ({"post_only": True, "tif": "fok"}, "post_only_tif", "a post-only order must be gtc or gtd"),
        ({"tif": "day"}, "bad_tif", "time in force must be gtc, ioc, fok or gtd, not 'day'"),
        ({"side": "short"}, "bad_side", "side must be buy or sell, not 'short'"),
        ({"type": "trailing"}, "bad_type", "order type must be limit, market, stop or stop_limit, not 'trailing'"),
        ({"client_order_id": ""}, "bad_client_order_id", "client_order_id must be 1 to 128 characters"),
        ({"client_order_id": "x" * 129}, "bad_client_order_id", "client_order_id must be 1 to 128 characters"),
        ({"user": ""}, "bad_user", "user must be a name of 1 to 128 characters"),
        ({"post_only": "yes"}, "bad_post_only", "post_only must be true or false"),
    ],
)
def test_bad_orders_are_rejected_with_a_specific_reason(
    ex: Exchange, overrides: dict[str, Any], code: str, reason: str
) -> None:
    r = rejected(ex, make_place(**overrides))

    assert r.code == code
    assert r.reason.startswith(reason)
    assert (r.market, r.ts) == (MKT, 5)


@pytest.mark.parametrize(
    "qty",
    ["NaN", "nan", "Infinity", "-Infinity", "1e3", "1E3", "", " 1", "1 ", "+1", "1.", ".5", "0x10", "１", "1_000"],
)
def test_quantities_that_are_not_plain_decimals_are_bad_qty(ex: Exchange, qty: str) -> None:
    r = rejected(ex, make_place(qty=qty))

    assert r.code == "bad_qty"
    assert "is not a plain decimal number" in r.reason


@pytest.mark.parametrize("qty", ["0", "0.0", "-1", "-0"])
def test_zero_and_negative_quantities_must_be_above_zero(ex: Exchange, qty: str) -> None:
    r = rejected(ex, make_place(qty=qty))

    assert (r.code, r.reason.startswith("quantity must be above zero")) == ("bad_qty", True)


@pytest.mark.parametrize("price", ["NaN", "Infinity", "1e2", "100,5", "", "٥"])
def test_prices_that_are_not_plain_decimals_are_bad_price(ex: Exchange, price: str) -> None:
    r = rejected(ex, make_place(price=price))

    assert r.code == "bad_price"
    assert "is not a plain decimal number" in r.reason


@pytest.mark.parametrize("price", ["0", "0.00", "-100"])
def test_zero_and_negative_prices_must_be_above_zero(ex: Exchange, price: str) -> None:
    r = rejected(ex, make_place(price=price))

    assert (r.code, r.reason.startswith("price must be above zero")) == ("bad_price", True)


def test_a_non_string_quantity_is_bad_qty_not_a_crash(ex: Exchange) -> None:
    r = rejected(ex, make_place(qty=5))

    assert r.code == "bad_qty"
    assert "a int" in r.reason


def test_quantity_below_the_markets_minimum() -> None:
    spec = MarketSpec("X_INR", "X", "INR", "0.01", "1", "5", "100", "1000")
    ex = Exchange([spec])

    r = rejected(ex, make_place(market="X_INR", qty="2"))

    assert (r.code, r.reason) == ("min_qty", "quantity 2 is below the minimum 5 for X_INR")


def test_an_unknown_market_is_rejected_on_accounts_naming_the_known_ones(ex: Exchange) -> None:
    r = rejected(ex, make_place(market="ACME_INR"))

    assert (r.code, r.market) == ("unknown_market", ACCOUNTS)
    assert r.reason == "unknown market 'ACME_INR': known markets are TATA_INR, JIO_INR"
    assert (r.user, r.client_order_id, r.ts) == ("bob", "c1", 5)


def test_a_huge_garbage_market_name_is_truncated_in_the_reason(ex: Exchange) -> None:
    r = rejected(ex, make_place(market="Z" * 10_000))

    assert r.code == "unknown_market"
    assert len(r.reason) < 200


def test_malformed_commands_are_rejected_not_raised(ex: Exchange) -> None:
    bad_ts = rejected(ex, make_place(ts="5"))
    bad_user = rejected(ex, make_place(user=None))
    not_a_command = rejected(ex, "place an order please")

    assert (bad_ts.code, bad_ts.market, bad_ts.ts) == ("bad_command", ACCOUNTS, 0)
    assert "ts must be a int" in bad_ts.reason
    assert bad_user.code == "bad_command"
    assert not_a_command.code == "bad_command"


def test_a_rejected_order_changes_nothing_but_the_markets_seq(ex: Exchange) -> None:
    before = (ex.balances("bob"), ex.totals(), ex.open_orders("bob"), ex.book(MKT).bids)

    for overrides in ({"price": "100.01"}, {"qty": "0"}, {"qty": "99999", "price": "999999"}):
        rejected(ex, make_place(**overrides))

    assert (ex.balances("bob"), ex.totals(), ex.open_orders("bob"), ex.book(MKT).bids) == before
    assert ex.book(MKT).seq == 3
    assert ex.apply(limit("bob", "buy", 1, "100"))[0].order_id == 1  # no order id was spent


@pytest.mark.parametrize("order_id", [999, "1", True, -1, None])
def test_cancel_of_an_id_that_is_not_the_users_open_order_is_unknown_order(ex: Exchange, order_id: object) -> None:
    ex.apply(limit("bob", "buy", 1, "100"))  # order 1 is bob's

    r = rejected(ex, Cancel("bob", "rq", MKT, order_id, 3))  # type: ignore[arg-type]

    assert (r.code, r.client_order_id, r.market) == ("unknown_order", "rq", MKT)
    assert "unknown order" in r.reason
    assert len(ex.open_orders("bob")) == 1


def test_cancel_and_cancel_all_in_an_unknown_market_are_rejected(ex: Exchange) -> None:
    one = rejected(ex, Cancel("bob", "r1", "NOPE", 1, 3))
    every = rejected(ex, CancelAll("bob", "r2", "NOPE", 3))

    assert (one.code, every.code) == ("unknown_market", "unknown_market")
    assert (one.client_order_id, every.client_order_id) == ("r1", "r2")
