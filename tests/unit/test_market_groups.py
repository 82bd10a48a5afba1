"""Market groups: the layout's rules, each group's own engine numbering and funding, merged answers."""

from __future__ import annotations

import msgspec
import pytest

from stockctl.exchange.engine import Exchange
from stockctl.exchange.groups import GroupsError, market_groups, merge, split_funding
from stockctl.wire.exchange import DEFAULT_MARKETS, Fund, MarketSpec, Place

AAPL = MarketSpec("AAPL_USD", "AAPL", "USD", "0.01", "1", "1", "100000", "1000000")
MSFT = MarketSpec("MSFT_USD", "MSFT", "USD", "0.01", "1", "1", "100000", "1000000")
SPECS = (*DEFAULT_MARKETS, AAPL, MSFT)  # TATA_INR, JIO_INR share INR; AAPL_USD, MSFT_USD share USD


def test_without_a_layout_there_is_one_group_main_of_every_market_under_the_old_names() -> None:
    groups = market_groups("", SPECS)
    (main,) = groups.groups
    assert (main.name, main.symbols, main.accounts_market, main.first_id, groups.id_step) == (
        "main",
        ("TATA_INR", "JIO_INR", "AAPL_USD", "MSFT_USD"),
        "ACCOUNTS",
        1,
        1,
    )


def test_a_layout_splits_markets_and_assets_and_instances_take_the_groups_in_turn() -> None:
    groups = market_groups(" us = MSFT_USD, AAPL_USD ; inr=TATA_INR,JIO_INR ", SPECS)
    us, inr = groups.groups
    assert us.symbols == ("AAPL_USD", "MSFT_USD")  # the markets file's order, not the layout's
    assert (us.assets, inr.assets) == (("AAPL", "USD", "MSFT"), ("TATA", "INR", "JIO"))
    assert (us.accounts_market, inr.accounts_market) == ("ACCOUNTS-US", "ACCOUNTS-INR")
    assert [groups.of_instance(n).name for n in (1, 2, 3, 4)] == ["us", "inr", "us", "inr"]
    assert groups.of_market("JIO_INR") is inr and groups.of_market("ACCOUNTS-US") is us
    assert groups.of_market("NOPE") is None
    assert groups.layout() == "us=AAPL_USD,MSFT_USD;inr=TATA_INR,JIO_INR"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("us=AAPL_USD,TATA_INR;rest=JIO_INR,MSFT_USD", "asset INR is traded in groups 'us' and 'rest'"),
        ("us=AAPL_USD,MSFT_USD", "markets TATA_INR, JIO_INR in no group"),
        ("us=AAPL_USD,MSFT_USD,NOPE;inr=TATA_INR,JIO_INR", "lists 'NOPE', which is not a configured market"),
        ("us=AAPL_USD,MSFT_USD;inr=TATA_INR,JIO_INR,AAPL_USD", "market AAPL_USD is in two groups"),
        ("US=AAPL_USD,MSFT_USD;inr=TATA_INR,JIO_INR", "bad market group 'US=AAPL_USD,MSFT_USD'"),
        ("us AAPL_USD", "write NAME=MARKET,MARKET"),
        ("us=;inr=TATA_INR,JIO_INR,AAPL_USD,MSFT_USD", "market group 'us' lists no market"),
        ("us=AAPL_USD;us=MSFT_USD;inr=TATA_INR,JIO_INR", "market group 'us' is named twice"),
    ],
)
def test_a_bad_layout_is_refused_in_one_line_that_says_what_to_change(text: str, says: str) -> None:
    with pytest.raises(GroupsError) as err:
        market_groups(text, SPECS)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_market_with_the_name_of_a_groups_accounts_market_is_refused() -> None:
    odd = MarketSpec("ACCOUNTS-US", "X", "Y", "0.01", "1", "1", "10", "100")
    with pytest.raises(GroupsError, match="name of a group's accounts market"):
        market_groups("us=AAPL_USD,MSFT_USD;x=ACCOUNTS-US", (AAPL, MSFT, odd))


def _trade(ex: Exchange, accounts: str, market: str, assets: dict[str, str]) -> list[int]:
    """Fund two users on ``accounts``, cross one order; the order ids and trade id it made."""
    for user in ("ann", "bob"):
        (funded,) = ex.apply(Fund(user=user, request_id="f", amounts=assets, ts=1))
        assert funded.market == accounts
    sell = ex.apply(Place("ann", "s", market, "sell", "limit", "1", 2, price="10"))
    buy = ex.apply(Place("bob", "b", market, "buy", "limit", "1", 3, price="10"))
    return [sell[0].order_id, buy[0].order_id, buy[1].trade_id]  # type: ignore[union-attr]


def test_each_groups_engine_numbers_ids_in_its_own_share_and_names_its_accounts_market() -> None:
    groups = market_groups("us=AAPL_USD,MSFT_USD;inr=TATA_INR,JIO_INR", SPECS)
    ids = {}
    for g in groups.groups:
        ex = Exchange(g.markets, first_id=g.first_id, id_step=groups.id_step, accounts_market=g.accounts_market)
        base, quote = g.markets[0].base, g.markets[0].quote
        ids[g.name] = _trade(ex, g.accounts_market, g.symbols[0], {base: "100", quote: "100000"})
        again = Exchange.restore(ex.snapshot(), groups.id_step, g.accounts_market)
        assert again.apply(Place("ann", "s2", g.symbols[0], "sell", "limit", "1", 4, price="10"))[0].order_id == (
            ids[g.name][1] + groups.id_step  # a restored engine goes on in its share
        )
        assert again.seq(g.accounts_market) == 2
    assert ids == {"us": [1, 3, 1], "inr": [2, 4, 2]}  # order ids, then the trade id: disjoint shares


def test_an_engines_id_share_must_be_one_of_its_step() -> None:
    with pytest.raises(ValueError, match=r"first_id 3 must be 1\.\.id_step"):
        Exchange(DEFAULT_MARKETS, first_id=3, id_step=2)


def test_a_funding_splits_by_asset_and_an_unknown_asset_goes_to_the_first_group() -> None:
    groups = market_groups("us=AAPL_USD,MSFT_USD;inr=TATA_INR,JIO_INR", SPECS)
    parts = split_funding(groups, {"INR": "5", "USD": "7", "TATA": "1", "DOGE": "9"})
    assert [(g.name, amounts) for g, amounts in parts] == [
        ("us", {"USD": "7", "DOGE": "9"}),
        ("inr", {"INR": "5", "TATA": "1"}),
    ]


def test_answers_of_every_group_merge_into_one() -> None:
    enc = msgspec.json.encode
    balances = merge("balances", [enc({"USD": {"available": "1"}}), enc({"INR": {"available": "2"}})])
    assert msgspec.json.decode(balances) == {"USD": {"available": "1"}, "INR": {"available": "2"}}
    orders = merge("orders", [enc([{"order_id": 1}, {"order_id": 5}]), enc([{"order_id": 2}])])
    assert [o["order_id"] for o in msgspec.json.decode(orders)] == [1, 2, 5]
    bad = merge("balances", [enc({"USD": {}}), enc({"error": "bad_query", "detail": "x"})])
    assert msgspec.json.decode(bad)["error"] == "bad_query"
    groups = market_groups("us=AAPL_USD,MSFT_USD;inr=TATA_INR,JIO_INR", SPECS)
    assert [g.name for g in groups.asked("balances", {"user": "a"})] == ["us", "inr"]
    assert [g.name for g in groups.asked("book", {"market": "JIO_INR"})] == ["inr"]
    assert [g.name for g in groups.asked("outcome", {"user": "a", "client_order_id": "c"})] == ["us"]
