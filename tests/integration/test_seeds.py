"""The seed systems' clients, unchanged but for host and port, against a real stack.

Every request or message below is copied verbatim from the seed's design document
(``shared/seeds/00N_*.txt``, section named in the comment) and sent over real sockets;
the answers are checked against the shapes those documents show. Numbers are parsed
with ``parse_float=Decimal`` so a price is checked digit for digit, never as a float.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import nats
import pytest
import websockets

from tests.support.cli import PASSWORD
from tests.support.gateway import GatewayStack
from tests.support.stack import stack_settings, wait_for, wipe_exchange

pytestmark = pytest.mark.integration


class Stack(GatewayStack):
    @property
    def seed_ws(self) -> str:  # the seeds' `/ws`, on the gateway's HTTP port
        return f"ws://{self.settings.host}:{self.settings.gateway_port}/ws"


def start(servers, home: Path, daemons, public: bool, names: tuple[str, ...], **overrides) -> Stack:
    wipe_exchange(servers)
    settings = stack_settings(
        servers,
        home,
        symbols=["AAPL", "GOOG", "BTCUSDT"],  # the symbols the seeds' examples name
        rate=20,
        sma_fast=3,
        sma_slow=5,
        public_market_data=public,
        **overrides,
    )
    return Stack(settings, {name: daemons(name, settings) for name in names})


@pytest.fixture
def public(servers, tmp_path: Path, daemons) -> Stack:
    s = start(servers, tmp_path / "home", daemons, True, ("matching", "processor", "publisher", "auth", "gateway"))
    wait_for(lambda: len(httpx.get(f"{s.base}/prices", timeout=5).json()["data"]) == 3, 20, what="3 prices")
    return s


@pytest.fixture
def private(servers, tmp_path: Path, daemons) -> Stack:
    return start(servers, tmp_path / "home", daemons, False, ("processor", "publisher", "auth", "gateway"))


def decimal_json(text: str | bytes) -> object:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def rfc3339(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    assert ts.utcoffset() is not None and text.endswith("Z"), text
    return ts


async def recv(ws, timeout: float = 5.0) -> dict:
    return decimal_json(await asyncio.wait_for(ws.recv(), timeout))


# --- seed 002 -------------------------------------------------------------------------------


def test_seed_002_rest_answers_in_its_envelope(public: Stack) -> None:
    wait_for(lambda: len(httpx.get(f"{public.base}/api/v1/history/AAPL?limit=10", timeout=5).json()) == 10, 10)
    public.daemons["publisher"].terminate()  # still prices: the seed's answer and ours can be compared
    time.sleep(1.0)  # ticks already in flight reach Redis
    native = {q["symbol"]: q["price"] for q in httpx.get(f"{public.base}/api/v1/prices", timeout=5).json()}

    # seed 002, "Test HTTP API": curl http://localhost:3000/prices
    resp = httpx.get(f"{public.base}/prices", timeout=5)
    body = decimal_json(resp.text)
    assert resp.status_code == 200 and list(body) == ["message", "data", "success"]
    assert body["message"] == "successfully send all the prices" and body["success"] is True
    assert body["data"] == {sym: Decimal(p) for sym, p in native.items()}
    assert all(isinstance(p, Decimal) for p in body["data"].values())  # JSON numbers, exact digits

    # seed 002, "Get Current Price": GET /price/{symbol}, curl http://localhost:3000/price/AAPL
    body = decimal_json(httpx.get(f"{public.base}/price/AAPL", timeout=5).text)
    assert body == {
        "message": "successfully send price for the symbol",
        "data": {"symbol": "AAPL", "price": Decimal(native["AAPL"])},
        "success": True,
    }

    # seed 002, "Get Price History": GET /price/history/AAPL/10 (newest first, as its ZREVRANGE)
    body = decimal_json(httpx.get(f"{public.base}/price/history/AAPL/10", timeout=5).text)
    ours = httpx.get(f"{public.base}/api/v1/history/AAPL?limit=10", timeout=5).json()
    assert body["message"] == "successfully send price history" and body["success"] is True
    assert body["data"] == [Decimal(p[0]) for p in reversed(ours)]
    assert body["data"][0] == Decimal(native["AAPL"])


def test_seed_002_websocket_streams_its_messages_without_a_subscribe(public: Stack) -> None:
    async def scenario() -> None:
        # seed 002, "WebSocket Endpoint": new WebSocket("ws://localhost:8082/ws"), then only onmessage
        async with websockets.connect(public.seed_ws) as ws:
            seen = set()
            for _ in range(30):
                msg = await recv(ws)
                assert {"symbol", "price", "timestamp"} <= set(msg), msg
                assert isinstance(msg["price"], Decimal) and msg["price"] > 0
                rfc3339(msg["timestamp"])
                seen.add(msg["symbol"])
            assert seen == {"AAPL", "GOOG", "BTCUSDT"}

    asyncio.run(scenario())


# --- seed 001 -------------------------------------------------------------------------------


def test_a_seed_socket_that_floods_messages_is_closed(public: Stack) -> None:
    async def scenario() -> None:
        async with websockets.connect(public.seed_ws) as ws:
            msg = "[1]"  # cheap to refuse, so the server reads them as fast as they come
            for _ in range(int(public.settings.ws_max_messages_per_s * 6)):  # well over the 2 s burst
                await ws.send(msg)
            got = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 5))
            assert closed.value.rcvd.code == 1008 and len(got) < len(
                range(int(public.settings.ws_max_messages_per_s * 6))
            )

    asyncio.run(scenario())


def test_seed_001_subscribe_gets_a_snapshot_then_updates_of_those_symbols_only(public: Stack) -> None:
    async def scenario() -> None:
        # seed 001, "Connect Clients": WebSocket URL ws://localhost:8081/ws and this message
        async with websockets.connect(public.seed_ws) as ws:
            await ws.send("""{
       "action": "subscribe",
       "payload": {
         "symbols": ["AAPL", "GOOG"]
       }
     }""")
            snap = await recv(ws)
            assert snap["type"] == "snapshot"
            assert sorted(p["symbol"] for p in snap["data"]) == ["AAPL", "GOOG"]
            assert all(isinstance(p["price"], Decimal) for p in snap["data"])
            updates = [await recv(ws) for _ in range(20)]
            assert {u["type"] for u in updates} == {"update"}
            assert {u["data"]["symbol"] for u in updates} == {"AAPL", "GOOG"}
            for u in updates:
                assert set(u["data"]) == {"symbol", "price", "timestamp"}
                rfc3339(u["data"]["timestamp"])

            await ws.send('{"action":"subscribe","payload":{"symbols":["NOPE"]}}')
            err = await recv_until(ws, lambda m: m.get("type") == "error")
            assert err["error"] == "notfound" and "NOPE" in err["detail"]
            for bad in ("not json", b"\xff\xfe", '{"action":"subscribe"}', "[1]", '{"op":"subscribe"}'):
                await ws.send(bad)
                err = await recv_until(ws, lambda m: m.get("type") == "error")
                assert err["error"] == "usageerror", (bad, err)
            await ws.send('{"action":"unsubscribe","payload":{"symbols":["AAPL"]}}')
            await ws.send('{"action":"subscribe","payload":{"symbols":["BTCUSDT"]}}')  # the socket still serves
            snap = await recv_until(ws, lambda m: m.get("type") == "snapshot")
            assert [p["symbol"] for p in snap["data"]] == ["BTCUSDT"]
            later = [await recv_until(ws, lambda m: m.get("type") == "update") for _ in range(10)][-4:]
            assert {u["data"]["symbol"] for u in later} <= {"GOOG", "BTCUSDT"}  # AAPL is gone

    asyncio.run(scenario())


async def recv_until(ws, pred, timeout: float = 10.0) -> dict:
    async def loop() -> dict:
        while True:
            msg = await recv(ws)
            if pred(msg):
                return msg

    return await asyncio.wait_for(loop(), timeout)


# --- seed 003 -------------------------------------------------------------------------------


def test_seed_003_history_and_latest_price_sma_signal(public: Stack) -> None:
    wait_for(lambda: len(httpx.get(f"{public.base}/api/v1/history/BTCUSDT", timeout=5).json()) >= 10, 10)
    # seed 003, "HTTP Endpoints": GET /api/v1/history/:symbol (e.g., BTCUSDT), the last 100 trades
    hist = httpx.get(f"{public.base}/api/v1/history/BTCUSDT", timeout=5).json()
    assert 10 <= len(hist) <= 100 and all(Decimal(p[0]) > 0 for p in hist)
    assert [p[2] for p in hist] == sorted(p[2] for p in hist)  # [price, ts, seq], oldest first

    # seed 003, "HTTP Endpoints": GET /api/v1/btc, latest price, SMA and BUY/SELL
    btc = decimal_json(httpx.get(f"{public.base}/api/v1/btc", timeout=5).text)
    assert set(btc) == {"symbol", "price", "sma", "signal", "timestamp"} and btc["symbol"] == "BTCUSDT"
    assert isinstance(btc["price"], Decimal) and isinstance(btc["sma"], Decimal)
    assert btc["signal"] == ("BUY" if btc["price"] > btc["sma"] else "SELL")
    rfc3339(btc["timestamp"])

    async def scenario() -> None:
        # seed 003, "WebSockets": /ws streams Price, SMA-20 and Signals
        async with websockets.connect(public.seed_ws) as ws:
            msg = await recv_until(ws, lambda m: m.get("symbol") == "BTCUSDT")
            assert isinstance(msg["sma"], Decimal) and msg["signal"] in ("BUY", "SELL")

    asyncio.run(scenario())


# --- seed 004 -------------------------------------------------------------------------------


def test_seed_004_login_order_and_order_book_channel(public: Stack) -> None:
    # seed 004, "Authentication": its example password is too weak for our policy, so that
    # user cannot exist: the verbatim request is refused with our error shape.
    verbatim = '{"email": "trader@example.com", "password": "secure123"}'
    resp = httpx.post(
        f"{public.base}/login", content=verbatim, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert resp.status_code == 401 and set(resp.json()) >= {"error", "detail"}
    public.token("trader@example.com")  # registered through our door, with a strong password
    resp = httpx.post(f"{public.base}/login", json={"email": "trader@example.com", "password": PASSWORD}, timeout=10)
    assert resp.status_code == 200 and list(resp.json()) == ["token"]
    jwt = resp.json()["token"]

    # seed 004, "Place Order": the body verbatim (but for a trailing space after "Limit",)
    order_body = """{
    "order_type": "Buy",
    "order_kind": "Limit",
    "price": 100.50,
    "quantity": 10,
    "market": "TATA_INR"
  }"""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {jwt}"}

    async def scenario() -> None:
        # seed 004, "WebSocket Connection": ws://localhost:8080/ws?user_id=user123, then SubscribeOrderbook
        async with websockets.connect(public.seed_ws + "?user_id=user123") as ws:
            await ws.send(json.dumps({"SubscribeOrderbook": "TATA_INR"}))
            snap = await recv(ws)
            assert snap["OrderbookSnapshot"]["market"] == "TATA_INR"
            assert snap["OrderbookSnapshot"]["bids"] == []

            resp = httpx.post(f"{public.base}/order", content=order_body, headers=headers, timeout=15)
            assert resp.status_code == 201 and resp.json()["status"] == "open", resp.text
            update = await recv(ws)
            assert update["OrderbookUpdate"]["bids"] == [[Decimal("100.50"), Decimal("10")]]
            # 100.55 is 100.5499999... as a float: through float it would miss the 0.05 tick
            body = order_body.replace("100.50", "100.55").replace('"quantity": 10', '"quantity": 3')
            resp = httpx.post(f"{public.base}/order", content=body, headers=headers, timeout=15)
            assert resp.status_code == 201, resp.text
            update = await recv(ws)
            assert update["OrderbookUpdate"]["bids"] == [[Decimal("100.55"), Decimal("3")]]

    asyncio.run(scenario())
    book = httpx.get(f"{public.base}/api/v1/book/TATA_INR", timeout=5).json()
    assert [(p, q) for p, q, _ in book["bids"]] == [("100.55", "3"), ("100.50", "10")]

    market_sell = '{"order_type": "Sell", "order_kind": "Market", "quantity": 2, "market": "TATA_INR"}'
    seller = {"Content-Type": "application/json", "Authorization": f"Bearer {public.token('seller@example.com')}"}
    resp = httpx.post(f"{public.base}/order", content=market_sell, headers=seller, timeout=15)
    assert resp.status_code == 201 and resp.json()["status"] == "filled", resp.text
    assert resp.json()["filled"][0]["price"] == "100.55"

    for bad, status in (
        (order_body.replace('"Buy"', '"Hold"'), 422),
        (order_body.replace("100.50", "1e999999999"), 400),  # would be a billion digits spelled out
        (order_body.replace('"Limit"', '"Limit", "stop": 1'), 422),
    ):
        resp = httpx.post(f"{public.base}/order", content=bad, headers=headers, timeout=15)
        assert resp.status_code == status and set(resp.json()) == {"error", "detail"}, (bad, resp.text)
    assert [(p, q) for p, q, _ in httpx.get(f"{public.base}/api/v1/book/TATA_INR", timeout=5).json()["bids"]] == [
        ("100.55", "1"),
        ("100.50", "10"),
    ]


# --- seed 000 -------------------------------------------------------------------------------


def test_seed_000_stock_prices_subject_carries_its_stock_price(public: Stack) -> None:
    async def scenario() -> list[dict]:
        # seed 000, "Consumer": subscribes to the "stock_prices" topic
        nc = await nats.connect(public.settings.effective_nats_url)
        sub = await nc.subscribe("stock_prices")
        got = [decimal_json((await sub.next_msg(5)).data) for _ in range(15)]
        await nc.close()
        return got

    msgs = asyncio.run(scenario())
    for msg in msgs:
        # seed 000, "Stock Price Structure": symbol: String, price: f64, timestamp: String
        assert list(msg) == ["symbol", "price", "timestamp"]
        assert isinstance(msg["price"], Decimal) and msg["price"] > 0
        rfc3339(msg["timestamp"])
    assert {m["symbol"] for m in msgs} == {"AAPL", "GOOG", "BTCUSDT"}


# --- public market data on/off -------------------------------------------------------------


def test_public_market_data_needs_no_token_but_trading_always_does(public: Stack) -> None:
    for path in ("/prices", "/price/AAPL", "/price/history/AAPL/5", "/api/v1/btc", "/api/v1/prices"):
        assert httpx.get(f"{public.base}{path}", timeout=5).status_code == 200, path
    assert httpx.get(f"{public.base}/api/v1/book/TATA_INR", timeout=5).status_code == 200
    order = '{"order_type": "Buy", "order_kind": "Limit", "price": 100.50, "quantity": 10, "market": "TATA_INR"}'
    assert httpx.post(f"{public.base}/order", content=order, timeout=5).status_code == 401
    native = {"market": "TATA_INR", "side": "buy", "qty": "1", "price": "100"}
    assert httpx.post(f"{public.base}/api/v1/orders", json=native, timeout=5).status_code == 401
    for path in ("/api/v1/balances", "/api/v1/fills", "/api/v1/orders", "/api/v1/alerts"):
        assert httpx.get(f"{public.base}{path}", timeout=5).status_code == 401, path


def test_public_market_data_opens_our_own_websocket_to_market_channels_only(public: Stack) -> None:
    async def scenario() -> None:
        async with websockets.connect(public.settings.ws_url) as ws:  # no token, no auth message
            await ws.send('{"op":"subscribe","channels":["quotes:AAPL"],"id":1}')
            got = await recv_until(ws, lambda m: m.get("type") == "subscribed")
            assert got["channels"] == ["quotes:AAPL"]
            await recv_until(ws, lambda m: m.get("type") == "quote" and m["channel"] == "quotes:AAPL")
            for private in ('{"op":"subscribe","channels":["orders"]}', '{"op":"subscribe","channels":["alerts"]}'):
                await ws.send(private)
                err = await recv_until(ws, lambda m: m.get("type") == "error")
                assert err["error"] == "unauthorized", err
            await ws.send('{"op":"place","order":{"market":"TATA_INR","side":"buy","qty":"1","price":"100"}}')
            err = await recv_until(ws, lambda m: m.get("type") == "error")
            assert err["error"] == "unauthorized", err
            await ws.send(json.dumps({"op": "auth", "token": public.token()}))
            await recv_until(ws, lambda m: m.get("type") == "welcome")
            await ws.send('{"op":"subscribe","channels":["orders"]}')
            got = await recv_until(ws, lambda m: m.get("type") in ("subscribed", "error"))
            assert got["type"] == "subscribed" and "orders" in got["channels"], got

    asyncio.run(scenario())


def test_without_public_market_data_the_seed_doors_need_a_token(private: Stack) -> None:
    tok = private.token()
    auth = {"Authorization": f"Bearer {tok}"}
    wait_for(lambda: httpx.get(f"{private.base}/prices", headers=auth, timeout=5).json()["data"], 20)
    for path in ("/prices", "/price/AAPL", "/price/history/AAPL/1", "/api/v1/prices"):
        resp = httpx.get(f"{private.base}{path}", timeout=5)
        assert resp.status_code == 401 and set(resp.json()) == {"error", "detail"}, path
        assert httpx.get(f"{private.base}{path}", headers=auth, timeout=5).status_code == 200, path
    order = '{"order_type": "Buy", "order_kind": "Limit", "price": 100.50, "quantity": 10, "market": "TATA_INR"}'
    assert httpx.post(f"{private.base}/order", content=order, timeout=5).status_code == 401

    async def scenario() -> None:
        async with websockets.connect(private.seed_ws) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 4401 and "STOCKCTL_PUBLIC_MARKET_DATA" in closed.value.rcvd.reason
        async with websockets.connect(private.settings.ws_url) as ws:  # our own WebSocket, too
            await ws.send('{"op":"subscribe","channels":["quotes:AAPL"]}')
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 4401
        async with websockets.connect(private.seed_ws, additional_headers=auth) as ws:
            msg = await recv(ws)
            assert {"symbol", "price", "timestamp"} <= set(msg)

    asyncio.run(scenario())


def test_a_seed_socket_opened_with_a_token_closes_when_it_expires(servers, tmp_path: Path, daemons) -> None:
    ttl = 10  # the shortest access token the settings allow
    s = start(
        servers,
        tmp_path / "home",
        daemons,
        False,
        ("processor", "publisher", "auth", "gateway"),
        access_token_ttl_s=ttl,
    )
    auth = {"Authorization": f"Bearer {s.token()}"}
    wait_for(lambda: httpx.get(f"{s.base}/prices", headers=auth, timeout=5).json()["data"], 20)
    auth = {"Authorization": f"Bearer {s.token()}"}  # a fresh one: its life starts now

    async def scenario() -> float:
        async with websockets.connect(s.seed_ws, additional_headers=auth) as ws:
            opened = time.monotonic()
            frames = 0
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:  # streams until the token runs out, then is closed
                    await asyncio.wait_for(ws.recv(), ttl + 5)
                    frames += 1
            assert closed.value.rcvd.code == 4401 and "expired" in closed.value.rcvd.reason
            assert frames > ttl * 10  # it kept streaming for the token's whole life
            return time.monotonic() - opened

    lasted = asyncio.run(scenario())
    assert ttl - 2 <= lasted <= ttl + 2, lasted
