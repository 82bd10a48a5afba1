"""Amend, stops, good-till-date and icebergs end to end: REST, WebSocket and the Python client
against real daemons (gateway -> JetStream -> matching -> events)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import pytest
import websockets

from stockctl.client.api import GatewayClient, OrderRejected
from stockctl.errors import NotFound
from tests.support.exchange import Ex, running_exchange
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

MKT = "TATA_INR"


@pytest.fixture
def ex(servers, tmp_path: Path, daemons) -> Ex:
    return running_exchange(servers, tmp_path, daemons)


def opens(ex: Ex, email: str) -> list[dict]:
    return ex.call(email, "GET", "/api/v1/orders").json()


def asks(ex: Ex) -> list[tuple[str, str]]:
    return [(p, q) for p, q, *_ in ex.call("obs@example.com", "GET", f"/api/v1/book/{MKT}").json()["asks"]]


def test_amend_over_rest_keeps_or_loses_priority_trades_when_crossing_and_hides_others_orders(ex: Ex) -> None:
    ada, bob, cy = "ada@example.com", "bob@example.com", "cy@example.com"
    first = ex.order(ada, market=MKT, side="sell", qty="5", price="100").json()["order_id"]
    assert ex.order(bob, market=MKT, side="sell", qty="5", price="100").status_code == 201

    # A decrease at the same price keeps time priority: ada is still filled first.
    kept = ex.call(ada, "PATCH", f"/api/v1/orders/{first}", json={"qty": "3"})
    assert kept.status_code == 200, kept.text
    assert (kept.json()["priority"], kept.json()["remaining"], kept.json()["status"]) == ("kept", "3", "open")
    assert ex.balances(ada)["TATA"]["reserved"] == "3"
    taken = ex.order(cy, market=MKT, side="buy", qty="1", price="100").json()
    assert [f["qty"] for f in taken["filled"]] == ["1"]
    assert [f["order_id"] for f in ex.call(ada, "GET", "/api/v1/fills").json()] == [first]

    # Someone else's order is answered exactly like a missing one.
    theirs = ex.call(bob, "PATCH", f"/api/v1/orders/{first}", json={"qty": "1", "market": MKT})
    missing = ex.call(bob, "PATCH", "/api/v1/orders/999999", json={"qty": "1", "market": MKT})
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"] == missing.json()["error"] == "unknown_order"
    lookup = ex.call(bob, "PATCH", f"/api/v1/orders/{first}", json={"qty": "1"})  # no market: looked up
    assert lookup.status_code == 404 and set(lookup.json()) == {"error", "detail"}
    assert lookup.json()["error"] == "unknown_order", lookup.text
    lookup = ex.call(bob, "DELETE", f"/api/v1/orders/{first}")  # the same for a cancel
    assert lookup.status_code == 404 and lookup.json()["error"] == "unknown_order", lookup.text
    assert opens(ex, ada)[0]["remaining"] == "2"

    # A new qty at or below the filled part is refused; bad JSON fields too; nothing changes.
    low = ex.call(ada, "PATCH", f"/api/v1/orders/{first}", json={"qty": "1"})
    assert low.status_code == 422 and low.json()["error"] == "bad_qty", low.text
    junk = ex.call(ada, "PATCH", f"/api/v1/orders/{first}", json={"qty": "1", "colour": "red"})
    assert junk.status_code == 422 and set(junk.json()) == {"error", "detail"}
    assert opens(ex, ada)[0]["remaining"] == "2"

    # A buy amended across the book trades at once as a taker, at the makers' price.
    buy = ex.order(cy, market=MKT, side="buy", qty="4", price="99").json()["order_id"]
    crossed = ex.call(cy, "PATCH", f"/api/v1/orders/{buy}", json={"price": "101"})
    assert crossed.status_code == 200, crossed.text
    doc = crossed.json()
    assert [(f["qty"], f["price"]) for f in doc["filled"]] == [("2", "100.00"), ("2", "100.00")]
    assert doc["status"] == "filled" and bob not in crossed.text and ada not in crossed.text
    assert opens(ex, ada) == [] and opens(ex, bob)[0]["remaining"] == "3"


def test_stops_and_icebergs_over_rest(ex: Ex) -> None:
    ada, bob, cy = "ada@example.com", "bob@example.com", "cy@example.com"
    ex.order(bob, market=MKT, side="sell", qty="1", price="100")
    ex.order(cy, market=MKT, side="buy", qty="1", price="100")  # last trade: 100

    refused = ex.order(ada, market=MKT, side="buy", type="stop", qty="1", stop_price="99", price="120")
    assert refused.status_code == 422 and refused.json()["error"] == "would_trigger", refused.text
    off_tick = ex.order(ada, market=MKT, side="buy", type="stop", qty="1", stop_price="105.01", price="120")
    assert off_tick.status_code == 422 and off_tick.json()["error"] == "stop_tick_size"
    placed = ex.order(ada, market=MKT, side="buy", type="stop", qty="2", stop_price="105", price="110")
    assert placed.status_code == 201 and placed.json()["status"] == "pending", placed.text
    stop_id = placed.json()["order_id"]
    (pending,) = opens(ex, ada)
    assert (pending["status"], pending["stop_price"], pending["price"]) == ("pending", "105.00", "110.00")
    assert ex.balances(ada)["INR"]["reserved"] != "0"
    assert ex.call(ada, "GET", f"/api/v1/book/{MKT}").json()["bids"] == []
    raised = ex.call(ada, "PATCH", f"/api/v1/orders/{stop_id}", json={"price": "111"})  # a higher cap
    assert raised.status_code == 200 and raised.json()["status"] == "pending", raised.text

    # An iceberg shows its display part only; its owner sees all of it.
    ice = ex.order(bob, market=MKT, side="sell", qty="9", price="106", display_qty="2")
    assert ice.status_code == 201, ice.text
    assert asks(ex) == [("106.00", "2")]
    (mine,) = opens(ex, bob)
    assert (mine["qty"], mine["remaining"], mine["display_qty"], mine["visible"]) == ("9", "9", "2", "2")
    for body, code in (({"display_qty": "10"}, "display_above_qty"), ({"display_qty": "0.5"}, "display_lot_size")):
        bad = ex.order(bob, market=MKT, side="sell", qty="9", price="107", **body)
        assert bad.status_code == 422 and bad.json()["error"] == code, bad.text

    # A trade at 105 triggers the stop, which buys through the iceberg's refills within its cap.
    ex.order(bob, market=MKT, side="sell", qty="1", price="105")
    ex.order(cy, market=MKT, side="buy", qty="1", price="105")
    fills = wait_for(
        lambda: [f for f in ex.call(ada, "GET", "/api/v1/fills").json() if f["order_id"] == stop_id],
        what="the stop's fills",
    )
    assert [(f["qty"], f["price"]) for f in fills] == [("2", "106.00")]
    assert opens(ex, ada) == []
    assert asks(ex) == [("106.00", "2")] and opens(ex, bob)[0]["remaining"] == "7"
    history = ex.call(ada, "GET", "/api/v1/orders", params={"all": "true"}).json()["history"]
    assert "triggered" in [e["event"] for e in history]


def test_gtd_orders_expire_in_a_quiet_market_one_after_another(ex: Ex) -> None:
    ada = "ada@example.com"
    assert ex.balances(ada)["INR"]["reserved"] == "0"  # registered and funded before the clock starts
    now = dt.datetime.now(dt.UTC)
    expiries = [now + dt.timedelta(seconds=s) for s in (2.0, 4.0, 6.0)]
    ids = []
    for i, when in enumerate(expiries):
        body = {"market": MKT, "side": "buy", "qty": "1", "price": f"{90 + i}", "tif": "gtd"}
        # One as RFC 3339, the others as epoch milliseconds.
        body["expire_at"] = when.isoformat() if i == 0 else int(when.timestamp() * 1000)
        resp = ex.order(ada, **body)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["order_id"])
    past = ex.order(ada, market=MKT, side="buy", qty="1", price="90", tif="gtd", expire_at="2001-01-01T00:00:00Z")
    assert past.status_code == 422 and past.json()["error"] == "expire_in_past", past.text
    naive = ex.order(ada, market=MKT, side="buy", qty="1", price="90", expire_at="2031-01-01T00:00:00")
    assert naive.status_code == 400 and set(naive.json()) == {"error", "detail"} and "zone" in naive.text

    # Nothing else happens: the matching daemon's time commands expire them, each in its turn.
    for k, when in enumerate(expiries):
        wait_for(lambda k=k: ids[k] not in [o["order_id"] for o in opens(ex, ada)], timeout=10, what="an expiry")
        seen = dt.datetime.now(dt.UTC)
        assert seen >= when, f"order {ids[k]} expired early"
        later = [o["order_id"] for o in opens(ex, ada)]
        assert later == [i for i, w in zip(ids, expiries, strict=True) if w > seen + dt.timedelta(seconds=0.5)] or (
            later == ids[k + 1 :]
        )
    history = ex.call(ada, "GET", "/api/v1/orders", params={"all": "true"}).json()["history"]
    assert [e["order_id"] for e in history if e.get("reason") == "expired"] == ids
    assert ex.balances(ada)["INR"]["reserved"] == "0"


def test_amend_over_websocket_and_the_python_client(ex: Ex, monkeypatch: pytest.MonkeyPatch) -> None:
    ada, bob = "ada@example.com", "bob@example.com"
    token = ex.login(ada)
    oid = ex.order(ada, market=MKT, side="sell", qty="4", price="101", display_qty="2").json()["order_id"]

    async def scenario() -> tuple[dict, list[dict], list[dict]]:
        async with websockets.connect(ex.settings.ws_url) as ws:
            await ws.send(json.dumps({"op": "auth", "token": token}))
            await ws.send(json.dumps({"op": "subscribe", "channels": ["orders", f"book:{MKT}"]}))
            await ws.send(json.dumps({"op": "amend", "id": 7, "order_id": oid, "market": MKT, "qty": "6"}))
            await ws.send(json.dumps({"op": "amend", "id": 8, "order_id": 424242, "price": "1"}))
            result: dict = {}
            events: list[dict] = []
            books: list[dict] = []
            errors: list[dict] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not (result and errors and events and len(books) > 1):
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["type"] == "amend_result" and msg["id"] == 7:
                    result = msg
                elif msg.get("id") == 8:
                    errors.append(msg)
                elif msg["type"] == "order_event" and msg["data"]["event"] == "amended":
                    events.append(msg["data"])
                elif msg.get("channel") == f"book:{MKT}":
                    books.append(msg["data"])
            # No market given: the gateway looks the id up, and answers as the engine would.
            assert [(e["type"], e["code"], e["error"]) for e in errors] == [("amend_result", 404, "unknown_order")], (
                errors
            )
            return result, events, books

    result, events, books = asyncio.run(scenario())

    assert result["code"] == 200 and result["priority"] == "lost" and result["qty"] == "6"
    assert events[0]["order_id"] == oid and (events[0]["old_qty"], events[0]["new_qty"]) == ("4", "6")
    shown = [q for b in books for p, q, *_ in b["asks"] if p == "101.00"]
    assert shown and set(shown) == {"2"}, books  # the book never shows the hidden part

    settings = ex.settings
    monkeypatch.setenv("STOCKCTL_GATEWAY_URL", ex.base)
    with GatewayClient(settings, token=ex.login(ada)) as gw:
        doc = gw.amend(oid, price="101.50")
        assert (doc["price"], doc["remaining"], doc["priority"]) == ("101.50", "6", "lost")
        with pytest.raises(OrderRejected) as refused:
            gw.amend(oid, qty="0")
        assert refused.value.code == "bad_qty"
    with GatewayClient(settings, token=ex.login(bob)) as other, pytest.raises(NotFound):
        other.amend(oid, qty="1", market=MKT)
