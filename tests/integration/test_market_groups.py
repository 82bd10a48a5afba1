"""Market groups (``STOCKCTL_MARKET_GROUPS``, issue #12 item 3): markets split over several leaders.

Two groups, ``inr`` (TATA_INR, JIO_INR) and ``us`` (AAPL_USD), each led by its own matching
daemon (``matching-1``, ``matching-2``) on the session servers, behind one gateway. The
tests check that each daemon leads only its group's markets, that users trade in both groups
through the one API with order and trade ids unique across them and balances merged and
exact, that one group's leader dying stops only that group (the other keeps trading, and
the order sent meanwhile is applied once when its leader is back), and that a layout
which splits an asset or changes under an exchange with history is refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from stockctl.wire import names
from stockctl.wire.exchange import DEFAULT_MARKETS, MarketSpec, decode_record
from tests.support.cli import Cli
from tests.support.exchange import Ex
from tests.support.stack import Daemon, stack_settings, wait_for, wipe_exchange
from tests.support.streams import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

AAPL = MarketSpec("AAPL_USD", "AAPL", "USD", "0.01", "1", "1", "100000", "1000000")
LAYOUT = "inr=TATA_INR,JIO_INR;us=AAPL_USD"
DEMO = {"INR": "1000000", "TATA": "1000", "JIO": "1000", "USD": "100000", "AAPL": "1000"}
ALICE, BOB = "alice@example.com", "bob@example.com"


def _info(d: Daemon) -> dict:
    try:
        return json.loads(d.status_path.read_text())["info"]
    except (OSError, ValueError, KeyError):
        return {}


def _markets_file(tmp_path: Path) -> Path:
    path = tmp_path / "markets.json"
    path.write_bytes(msgspec.json.encode([*DEFAULT_MARKETS, AAPL]))
    return path


def _exchange(servers, tmp_path: Path, daemons, layout: str = LAYOUT) -> tuple[Ex, Daemon, Daemon]:
    wipe_exchange(servers)
    settings = stack_settings(
        servers, tmp_path / "home", markets_file=_markets_file(tmp_path), market_groups=layout, demo_balances=DEMO
    )
    inr, us = daemons("matching-1", settings), daemons("matching-2", settings)
    procs = {"matching-1": inr, "matching-2": us, **{n: daemons(n, settings) for n in ("auth", "gateway")}}
    wait_for(lambda: _info(inr).get("role") == "active" and _info(us).get("role") == "active", 20, what="both lead")
    return Ex(settings, procs), inr, us


def _cross(ex: Ex, market: str, qty: str, price: str) -> tuple[dict, dict]:
    """Alice rests a sell, Bob takes it: both answers."""
    sell = ex.order(ALICE, market=market, side="sell", qty=qty, price=price)
    assert sell.status_code == 201, sell.text
    buy = ex.order(BOB, market=market, side="buy", qty=qty, price=price)
    assert buy.status_code == 201, buy.text
    return sell.json(), buy.json()


def _amounts(ex: Ex, user: str) -> dict[str, tuple[Decimal, Decimal]]:
    return {a: (Decimal(v["available"]), Decimal(v["reserved"])) for a, v in ex.balances(user).items()}


def test_each_group_leads_its_own_markets_and_users_trade_in_both_through_one_api(
    servers, tmp_path: Path, daemons
) -> None:
    ex, inr, us = _exchange(servers, tmp_path, daemons)
    assert (_info(inr)["group"], _info(inr)["markets"]) == ("inr", ["TATA_INR", "JIO_INR"])
    assert (_info(us)["group"], _info(us)["markets"]) == ("us", ["AAPL_USD"])

    tata_sell, tata_buy = _cross(ex, "TATA_INR", "2", "100")
    aapl_sell, aapl_buy = _cross(ex, "AAPL_USD", "1", "150")
    assert tata_buy["status"] == aapl_buy["status"] == "filled", (tata_buy, aapl_buy)

    # Ids are unique across the groups: group inr numbers 1, 3, 5..., group us 2, 4, 6...
    inr_ids = [tata_sell["order_id"], tata_buy["order_id"]]
    us_ids = [aapl_sell["order_id"], aapl_buy["order_id"]]
    assert all(i % 2 == 1 for i in inr_ids) and all(i % 2 == 0 for i in us_ids), (inr_ids, us_ids)
    fills = ex.call(BOB, "GET", "/api/v1/fills").json()
    trade_ids = sorted(f["trade_id"] for f in fills)
    assert len(trade_ids) == 2 and trade_ids[0] % 2 == 1 and trade_ids[1] % 2 == 0, fills

    # Balances merge both groups' assets, exact to the unit (taker fee 10 bps, maker 0)
    zero = Decimal(0)
    assert _amounts(ex, ALICE) == {
        "TATA": (Decimal(998), zero),
        "INR": (Decimal(1_000_200), zero),
        "JIO": (Decimal(1000), zero),
        "AAPL": (Decimal(999), zero),
        "USD": (Decimal(100_150), zero),
    }
    assert _amounts(ex, BOB) == {
        "TATA": (Decimal(1002), zero),
        "INR": (Decimal("999799.8"), zero),
        "JIO": (Decimal(1000), zero),
        "AAPL": (Decimal(1001), zero),
        "USD": (Decimal("99849.85"), zero),
    }

    # Open orders of both groups in one list, cancellable by id alone, each in its own group
    for market, price in (("JIO_INR", "90"), ("AAPL_USD", "140")):
        resp = ex.order(ALICE, market=market, side="buy", qty="1", price=price)
        assert resp.status_code == 201, resp.text
    opens = ex.call(ALICE, "GET", "/api/v1/orders").json()
    assert sorted(o["market"] for o in opens) == ["AAPL_USD", "JIO_INR"]
    for o in opens:
        resp = ex.call(ALICE, "DELETE", f"/api/v1/orders/{o['order_id']}")
        assert resp.status_code == 200, resp.text
    assert ex.call(ALICE, "GET", "/api/v1/orders").json() == []
    assert _amounts(ex, ALICE)["USD"] == (Decimal(100_150), zero)  # the holds went back

    # Each group's events on its own subjects: its markets and its own accounts market
    records = read_stream(ex.settings.nats_url, names.EVENT_STREAM, names.EVENT_SUBJECTS)
    markets = {ev.market for data in records for ev in decode_record(data)}
    assert markets == {"TATA_INR", "JIO_INR", "AAPL_USD", "ACCOUNTS-INR", "ACCOUNTS-US"}


def test_one_groups_leader_down_stops_only_that_group_and_its_order_is_applied_once_when_back(
    servers, tmp_path: Path, daemons
) -> None:
    ex, _, us = _exchange(servers, tmp_path, daemons)
    _cross(ex, "TATA_INR", "1", "100")
    _cross(ex, "AAPL_USD", "1", "150")
    us.kill()

    # The inr group trades on while us has no leader
    _, buy = _cross(ex, "JIO_INR", "3", "50")
    assert buy["status"] == "filled", buy

    # An order for the us group is stored; the gateway says so and that it will be applied
    resp = ex.order(ALICE, market="AAPL_USD", side="sell", qty="2", price="160", client_order_id="while-down")
    assert resp.status_code == 503 and "stored" in resp.text, resp.text
    assert ex.call(ALICE, "GET", "/api/v1/balances").status_code == 503  # a partial balance would be wrong

    us.start()
    wait_for(lambda: _info(us).get("role") == "active", 20, what="us leads again")
    opens = ex.call(ALICE, "GET", "/api/v1/orders").json()
    assert [(o["market"], o["client_order_id"]) for o in opens] == [("AAPL_USD", "while-down")], opens
    again = ex.order(ALICE, market="AAPL_USD", side="sell", qty="2", price="160", client_order_id="while-down")
    assert again.status_code in (200, 201) and again.json()["order_id"] == opens[0]["order_id"], again.text
    assert _amounts(ex, ALICE)["AAPL"] == (Decimal(997), Decimal(2))  # held once, not twice


def test_a_changed_layout_is_refused_by_matching_and_a_split_asset_by_up(servers, tmp_path: Path, daemons) -> None:
    ex, inr, us = _exchange(servers, tmp_path, daemons)
    _cross(ex, "TATA_INR", "1", "100")
    inr.terminate()
    us.terminate()
    moved = stack_settings(
        servers,
        tmp_path / "home",
        markets_file=_markets_file(tmp_path),
        market_groups="us=AAPL_USD;inr=TATA_INR,JIO_INR",
        demo_balances=DEMO,
    )
    d = Daemon("matching-1", moved)
    d.start(wait_ready=False)
    assert d.proc is not None
    assert d.proc.wait(30) == 78
    assert "groups cannot change under an exchange with history" in d.log()
    assert f"made with the market groups {LAYOUT}" in d.log()

    cli = Cli(tmp_path / "cli-home")
    cli.env |= {
        "STOCKCTL_MARKETS_FILE": str(_markets_file(tmp_path)),
        "STOCKCTL_MARKET_GROUPS": "a=TATA_INR;b=JIO_INR,AAPL_USD",
    }
    proc = cli.run("up", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: STOCKCTL_MARKET_GROUPS: asset INR is traded in groups 'a' and 'b': markets that share an asset"
        " must be in one group (every balance lives in one group)"
    ], proc.stderr


def test_up_runs_one_matching_daemon_per_group_and_status_says_which_leads_what(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    cli.env |= {"STOCKCTL_MARKETS_FILE": str(_markets_file(tmp_path)), "STOCKCTL_MARKET_GROUPS": LAYOUT}
    try:
        cli.run("up", "--only", "nats,redis,matching", check=True, timeout=120)

        def roles() -> dict[str, dict]:
            rows = cli.json("status")
            return {r["name"]: r.get("role") or {} for r in rows if r["name"].startswith("matching")}  # type: ignore[union-attr]

        wait_for(lambda: [r.get("role") for r in roles().values()] == ["active", "active"], 30, what="both lead")
        assert {n: (r["group"], r["markets"]) for n, r in roles().items()} == {
            "matching-1": ("inr", ["TATA_INR", "JIO_INR"]),
            "matching-2": ("us", ["AAPL_USD"]),
        }
        shown = cli.run("status", check=True).stdout
        assert "leads group inr (TATA_INR,JIO_INR)" in shown and "leads group us (AAPL_USD)" in shown, shown
    finally:
        cli.run("down", timeout=120)
