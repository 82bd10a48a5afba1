"""The REST API's conventions (issue 14, part 3) over real sockets, against one running exchange.

Order by id with status, filled quantity, average price and remaining; cursor pages on fills,
orders, trades, history and candles; timestamps in ns, ms and RFC 3339; numbers in as strings
or JSON numbers and out as strings; per-user rate limits with 429 and ``X-RateLimit-*``; CORS
off unless configured; the full WebSocket protocol on the REST port; the OpenAPI spec (response
schemas checked by schemathesis, errors, security, enums) and the README's table against it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from stockctl.instance import infra
from stockctl.settings import Settings
from tests.support.exchange import Ex
from tests.support.stack import REPO, Daemon, stack_settings, wait_for, wipe_exchange

pytestmark = pytest.mark.integration

ORIGIN = "https://bot.example"
MONEY = {"qty", "price", "remaining", "filled_qty", "avg_price", "fee", "threshold", "fired_price", "last_price"}


@pytest.fixture(scope="module")
def ex(servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ex]:
    """One exchange for the module (matching, processor, publisher, auth, gateway): AAPL at 20 ticks/s."""
    wipe_exchange(servers)
    home = tmp_path_factory.mktemp("api") / "home"
    settings = stack_settings(servers, home, symbols=["AAPL"], rate=20, seed=3)
    procs = {n: Daemon(n, settings).start() for n in ("matching", "processor", "publisher", "auth", "gateway")}
    yield Ex(settings, procs)
    for d in procs.values():
        d.terminate()


def money_is_text(doc: Any, where: str = "$") -> None:
    """Every price, quantity, fee or balance in ``doc`` is a string (or null), never a JSON number."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in MONEY:
                assert v is None or isinstance(v, str), f"{where}.{k} = {v!r}"
            money_is_text(v, f"{where}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            money_is_text(v, f"{where}[{i}]")


def times_agree(doc: dict[str, Any], ns_key: str = "ts", ms_key: str = "ts_ms", iso_key: str = "time") -> None:
    ns = doc[ns_key]
    assert doc[ms_key] == ns // 1_000_000
    iso = doc[iso_key]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", iso), iso
    parsed = dt.datetime.fromisoformat(iso[:26] + "+00:00")  # to the microsecond
    assert abs(parsed.timestamp() * 1e9 - ns) < 2_000, (iso, ns)
    assert int(iso[20:29]) == ns % 1_000_000_000


def test_orders_by_id_status_fills_numbers_and_times(ex: Ex) -> None:
    # Arrange: alice rests a sell; bob takes part of it, sending JSON numbers
    sell = ex.order("alice@example.com", market="TATA_INR", side="sell", qty="10", price="100.50")
    assert sell.status_code == 201, sell.text
    oid = sell.json()["order_id"]
    buy = ex.call(
        "bob@example.com", "POST", "/api/v1/orders", content=b'{"market":"TATA_INR","side":"buy","qty":4,"price":101.0}'
    )
    assert buy.status_code == 201 and buy.json()["status"] == "filled", buy.text
    bob_oid = buy.json()["order_id"]

    # Act + Assert: the resting order, by id, as its owner sees it
    mine = ex.call("alice@example.com", "GET", f"/api/v1/orders/{oid}")
    assert mine.status_code == 200, mine.text
    doc = mine.json()
    assert (doc["status"], doc["filled_qty"], doc["remaining"], Decimal(doc["avg_price"])) == (
        "partially_filled",
        "4",
        "6",
        Decimal("100.5"),
    )
    times_agree(doc)
    money_is_text(doc)
    # the list carries status and filled quantity too
    listed = ex.call("alice@example.com", "GET", "/api/v1/orders").json()
    assert [(o["order_id"], o["status"], o["filled_qty"]) for o in listed] == [(oid, "partially_filled", "4")]
    # a finished order is still there; someone else's or an unknown id is a 404 alike
    bob = ex.call("bob@example.com", "GET", f"/api/v1/orders/{bob_oid}").json()
    assert (bob["status"], bob["filled_qty"], bob["remaining"], bob["avg_price"]) == ("filled", "4", "0", "100.5")
    for who, order_id in (("bob@example.com", oid), ("alice@example.com", 999_999)):
        resp = ex.call(who, "GET", f"/api/v1/orders/{order_id}")
        assert resp.status_code == 404 and set(resp.json()) == {"error", "detail"}, resp.text
    # cancelled after a part fill
    assert ex.call("alice@example.com", "DELETE", f"/api/v1/orders/{oid}").status_code == 200
    done = ex.call("alice@example.com", "GET", f"/api/v1/orders/{oid}").json()
    assert (done["status"], done["remaining"], done["filled_qty"], done["cancelled_qty"], done["reason"]) == (
        "partially_filled_cancelled",
        "0",
        "4",
        "6",
        "user",
    )

    # numbers in as JSON numbers (amend, alerts), out as strings; times beside every ts
    rest = ex.order("alice@example.com", market="TATA_INR", side="sell", qty="3", price="120")
    amended = ex.call("alice@example.com", "PATCH", f"/api/v1/orders/{rest.json()['order_id']}", json={"price": 121.5})
    assert amended.status_code == 200 and Decimal(amended.json()["price"]) == Decimal("121.5"), amended.text
    money_is_text(amended.json())
    alert = ex.call(
        "alice@example.com",
        "POST",
        "/api/v1/alerts",
        json={"symbol": "AAPL", "condition": "above", "threshold": 100000.25},
    )
    assert alert.status_code == 201 and alert.json()["alert"]["threshold"] == "100000.25", alert.text
    times_agree(alert.json()["alert"], "created", "created_ms", "created_time")
    money_is_text(alert.json())
    fills = ex.call("bob@example.com", "GET", "/api/v1/fills").json()
    times_agree(fills[0])
    money_is_text(fills)
    quote = ex.call("bob@example.com", "GET", "/api/v1/prices/AAPL").json()
    times_agree(quote)
    point = ex.call("bob@example.com", "GET", "/api/v1/history/AAPL?limit=1").json()[0]
    times_agree(dict(zip(("price", "ts", "seq", "ts_ms", "time"), point, strict=True)))


def test_cursor_pages_on_fills_trades_orders_history_and_candles(ex: Ex) -> None:
    # Arrange: carol makes three trades with dave, and rests three orders
    t0 = time.time_ns()
    for price in ("200", "201", "202"):
        ex.order("carol@example.com", market="JIO_INR", side="sell", qty="1", price=price)
        assert ex.order("dave@example.com", market="JIO_INR", side="buy", qty="1", price=price).status_code == 201
    for price in ("90", "91", "92"):
        ex.order("carol@example.com", market="JIO_INR", side="buy", qty="1", price=price)

    def walk(who: str, path: str, key: str, **params: Any) -> list[Any]:
        seen, after = [], None
        for _ in range(10):
            q = {"limit": 2, **params, **({"after": after} if after else {})}
            resp = ex.call(who, "GET", path, params=q)
            assert resp.status_code == 200, resp.text
            rows = resp.json()
            seen += [r[key] for r in rows]
            after = resp.headers.get("X-Next-After")
            if after is None:
                return seen
            assert after == str(rows[-1][key])
        raise AssertionError("no end to the pages")

    # Act + Assert: every item once, oldest first, across pages of 2
    fills = walk("dave@example.com", "/api/v1/fills", "trade_id", since="1h")
    assert len(fills) == 3 and fills == sorted(fills)
    trades = walk("dave@example.com", "/api/v1/trades/JIO_INR", "trade_id", after="0")
    assert trades == fills
    orders = walk("carol@example.com", "/api/v1/orders", "order_id", after="0")
    assert len(orders) == 3 and orders == sorted(orders)
    # until bounds a range (exclusive), and since/until agree with the ts of each item
    none = ex.call("dave@example.com", "GET", "/api/v1/fills", params={"from": "0", "until": str(t0)})
    assert none.json() == []
    both = ex.call(
        "dave@example.com", "GET", "/api/v1/history/AAPL", params={"from": "0", "until": str(time.time_ns()), "to": "1"}
    )
    assert both.status_code == 400 and "until" in both.json()["detail"]
    wait_for(lambda: len(ex.call("dave@example.com", "GET", "/api/v1/history/AAPL?limit=5").json()) == 5, 10)
    hist = ex.call("dave@example.com", "GET", "/api/v1/history/AAPL", params={"since": "1h", "limit": 2})
    assert hist.headers.get("X-Next-After") and len(hist.json()) == 2
    cut = hist.json()[1][1]
    bounded = ex.call(
        "dave@example.com", "GET", "/api/v1/history/AAPL", params={"since": "1h", "until": str(cut)}
    ).json()
    assert bounded and all(p[1] < cut for p in bounded)
    candles = ex.call(
        "dave@example.com",
        "GET",
        "/api/v1/candles/AAPL",
        params={"interval": "1s", "since": "1h", "until": str(time.time_ns())},
    )
    assert candles.status_code == 200 and all(c["start_ms"] == c["start"] // 1_000_000 for c in candles.json())
    bad = ex.call("dave@example.com", "GET", "/api/v1/fills", params={"after": "x"})
    assert bad.status_code == 400 and "cursor" in bad.json()["detail"]


def test_rate_limits_per_user_and_cors_only_when_configured(ex: Ex, daemons, tmp_path: Path) -> None:
    # Arrange: a second gateway on the same exchange, 5 requests per minute, one allowed origin
    values = {
        **ex.settings.model_dump(),
        "home": tmp_path / "gw2",
        "gateway_port": infra.free_port(),
        "ws_port": infra.free_port(),
    }
    other = Settings(**{**values, "rest_rate_limit": 5, "rest_rate_window_s": 60, "cors_origins": [ORIGIN]})
    other.ensure_dirs()
    daemons("gateway", other)
    base = other.gateway_url
    alice = {"Authorization": f"Bearer {ex.login('alice@example.com')}"}
    bob = {"Authorization": f"Bearer {ex.login('bob@example.com')}"}

    # Act: alice's five requests pass, the sixth does not; bob has his own allowance
    answers = [httpx.get(f"{base}/api/v1/balances", headers=alice, timeout=10) for _ in range(6)]

    # Assert
    assert [a.status_code for a in answers] == [200] * 5 + [429], [a.text for a in answers]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0", "0"]
    limited = answers[-1]
    assert limited.headers["X-RateLimit-Limit"] == "5"
    assert (
        1 <= int(limited.headers["Retry-After"]) <= 60
        and limited.headers["X-RateLimit-Reset"] == limited.headers["Retry-After"]
    )
    assert set(limited.json()) == {"error", "detail"} and limited.json()["error"] == "rate_limited"
    assert httpx.get(f"{base}/api/v1/balances", headers=bob, timeout=10).status_code == 200
    # the default limit is far above what tests send: the main gateway counts but never refuses
    main = ex.call("alice@example.com", "GET", "/api/v1/balances")
    assert main.status_code == 200 and int(main.headers["X-RateLimit-Limit"]) >= 10_000

    # CORS: the configured origin is allowed (preflight and the answer), others and the default gateway get nothing
    pre = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = httpx.options(f"{base}/api/v1/orders", headers=pre, timeout=10)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN, ok.headers
    got = httpx.get(f"{base}/api/v1/info", headers={"Origin": ORIGIN}, timeout=10)
    assert (
        got.headers["access-control-allow-origin"] == ORIGIN
        and "x-ratelimit-remaining" in got.headers["access-control-expose-headers"].lower()
    )
    evil = httpx.options(f"{base}/api/v1/orders", headers={**pre, "Origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in evil.headers
    off = httpx.options(f"{ex.base}/api/v1/orders", headers=pre, timeout=10)
    assert "access-control-allow-origin" not in off.headers
    assert (
        "access-control-allow-origin"
        not in httpx.get(f"{ex.base}/api/v1/info", headers={"Origin": ORIGIN}, timeout=10).headers
    )


def test_the_full_websocket_protocol_is_on_the_rest_port_too(ex: Ex) -> None:
    url = ex.base.replace("http://", "ws://") + "/api/v1/ws"
    token = ex.login("erin@example.com")

    async def scenario() -> None:
        # header auth, subscribe with a snapshot, live quotes, an order with JSON numbers, ping
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert welcome == {"type": "welcome", "email": "erin@example.com", "expires": welcome["expires"]}
            await ws.send(json.dumps({"op": "subscribe", "channels": ["quotes:AAPL", "orders"], "id": 1}))
            kinds: list[str] = []
            # The ack follows the last channel's subscription, so a live quote of the first
            # channel may come before it (CI saw snapshot, quote, subscribed): wait for both.
            while "quote" not in kinds or "subscribed" not in kinds:
                kinds.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"])
            assert kinds.index("snapshot") < kinds.index("quote"), kinds
            await ws.send('{"op":"place","order":{"market":"TATA_INR","side":"buy","qty":1,"price":50.5},"id":2}')
            while (msg := json.loads(await asyncio.wait_for(ws.recv(), 5))).get("type") != "order_result":
                pass
            assert (msg["code"], msg["status"], msg["id"]) == (201, "open", 2), msg
        # first-message auth; a bad token closes 4401 as on the ws port
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"op": "auth", "token": "not.a.token"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    asyncio.run(scenario())

    # seed 002's firehose keeps /ws on the same port
    async def seed() -> None:
        async with websockets.connect(
            ex.base.replace("http://", "ws://") + "/ws", additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            assert set(json.loads(await asyncio.wait_for(ws.recv(), 5))) >= {"symbol", "price", "timestamp"}

    asyncio.run(seed())


def readme_routes() -> set[tuple[str, str]]:
    """Every ``METHOD /path`` in the README's REST table (section "HTTP and WebSocket API")."""
    text = (REPO / "README.md").read_text()
    section = text.split("## HTTP and WebSocket API", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    found = set()
    for line in table:
        first_cell = line.split(" | ")[0]
        for method, path in re.findall(r"`(GET|POST|PATCH|DELETE|PUT) (/[^`?\s]*)", first_cell):
            found.add((method.lower(), shape(path)))
    return found


def shape(path: str) -> str:
    """A path with its parameters unnamed: ``/orders/{id}`` and ``/orders/{order_id}`` are one route."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_openapi_spec_is_the_api_and_the_readme_table_matches_it(ex: Ex) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hsettings
    from schemathesis import checks

    # The answers against the spec. Not positive_data_acceptance: a schema-valid symbol such as
    # "\x88" is still refused (400) by the symbol rule, which no JSON Schema pattern states.
    CHECKS = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
        checks.response_headers_conformance,
    ]

    spec = httpx.get(f"{ex.base}/openapi.json", timeout=10).json()
    ops = {(m, p): op for p, methods in spec["paths"].items() for m, op in methods.items()}
    routes = {(m, shape(p)) for m, p in ops}

    # every route has a response schema and the real error shape; security, enums, examples
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and set(schemas["Error"]["required"]) == {"error", "detail"}
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "an access token",
    }
    for key, op in ops.items():
        ok = next(v for k, v in op["responses"].items() if k.startswith("2"))
        assert ok["content"]["application/json"]["schema"], key
        assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }, key
    assert (
        ops[("get", "/api/v1/orders")]["security"] == [{"bearer": []}]
        and "security" not in ops[("get", "/api/v1/info")]
    )
    body = ops[("post", "/api/v1/orders")]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["side"]["enum"] == ["buy", "sell"] and body["example"]["market"]
    assert "gtd" in body["schema"]["properties"]["tif"]["enum"]
    assert "partially_filled" in schemas["OrderState"]["properties"]["status"]["enum"]

    # the README's table and the spec name the same routes (seeds' and /auth's are the auth spec's)
    documented = readme_routes()
    assert routes - documented == set(), f"in the spec, not in the README: {sorted(routes - documented)}"
    missing = {k for k in documented if k[1].startswith("/api/") and k not in routes}
    assert missing == set(), f"in the README, not in the spec: {sorted(missing)}"

    # schemathesis: generated requests, responses checked against the spec
    schema = schemathesis.openapi.from_url(f"{ex.base}/openapi.json")
    headers = {"Authorization": f"Bearer {ex.login('fuzz@example.com')}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        op = result.ok()

        @hsettings(
            max_examples=8,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            resp = case.call_and_validate(base_url=ex.base, headers=headers, timeout=15, checks=CHECKS)
            statuses[resp.status_code // 100] += 1

        try:
            check()
        except Exception as exc:
            failures.append(f"{op.label}: {str(exc)[:400]}")
    assert not failures, "\n".join(failures)
    assert statuses[2] >= 20 and statuses[4] >= 20, statuses  # answers of both kinds were checked
