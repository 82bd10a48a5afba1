"""The gateway over real sockets: REST with tokens, WebSocket channels, slow clients, restarts."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
import websockets

from stockctl.instance import infra
from stockctl.settings import Settings
from tests.support.cli import PASSWORD
from tests.support.gateway import GatewayStack
from tests.support.stack import stack_settings, wait_for

pytestmark = pytest.mark.integration


def gateway_settings(servers, home: Path, **overrides) -> Settings:
    """:func:`stack_settings` at 20 ticks/s with seed 1 unless ``overrides`` say otherwise."""
    return stack_settings(servers, home, **{"rate": 20, "seed": 1, **overrides})


@pytest.fixture
def stack(clean, tmp_path: Path, daemons) -> GatewayStack:
    settings = gateway_settings(clean, tmp_path / "home")
    started = {name: daemons(name, settings) for name in ("processor", "publisher", "auth", "gateway")}
    s = GatewayStack(settings, started)
    wait_for(lambda: len(get(s, "/api/v1/prices", token(s)).json()) == 2, 20, what="prices via gateway")
    return s


_tokens: dict[str, str] = {}


def register(s: GatewayStack, email: str) -> dict:
    resp = httpx.post(f"{s.base}/auth/register", json={"email": email, "password": PASSWORD}, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()


def token(s: GatewayStack, email: str = "ada@example.com") -> str:
    key = f"{s.base}|{email}"
    if key not in _tokens:
        _tokens[key] = s.token(email)
    return _tokens[key]


def get(s: GatewayStack, path: str, tok: str | None, base: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.get(f"{base or s.base}{path}", headers=headers, timeout=10)


@pytest.fixture(autouse=True)
def _forget_tokens() -> None:
    _tokens.clear()


# --- REST ---------------------------------------------------------------------------------


def test_rest_needs_a_token_and_serves_market_data(stack: GatewayStack) -> None:
    tok = token(stack)

    assert get(stack, "/api/v1/prices", None).status_code == 401
    assert get(stack, "/api/v1/prices", "not.a.token").status_code == 401
    prices = get(stack, "/api/v1/prices", tok).json()
    assert {p["symbol"] for p in prices} == {"AAPL", "MSFT"}
    one = get(stack, "/api/v1/prices/aapl", tok).json()
    assert one["symbol"] == "AAPL" and one["price"]
    wait_for(lambda: len(get(stack, "/api/v1/history/AAPL?limit=3", tok).json()) == 3, 10)
    hist = get(stack, "/api/v1/history/AAPL?limit=3", tok).json()
    assert [p[2] for p in hist] == sorted(p[2] for p in hist)
    assert isinstance(get(stack, "/api/v1/candles/AAPL?interval=1s&limit=5", tok).json(), list)
    assert isinstance(get(stack, "/api/v1/signals/AAPL", tok).json(), list)


def test_seed_002_aliases(stack: GatewayStack) -> None:
    tok = token(stack)

    # seed 002's envelope (tests/test_seeds.py checks it in full)
    assert len(get(stack, "/prices", tok).json()["data"]) == 2
    assert get(stack, "/price/MSFT", tok).json()["data"]["symbol"] == "MSFT"
    wait_for(lambda: len(get(stack, "/price/history/MSFT/2", tok).json()["data"]) == 2, 10)


def test_rest_errors_are_4xx_json_with_a_reason(stack: GatewayStack) -> None:
    tok = token(stack)
    cases = {
        "/api/v1/prices/NOPE": (404, "known symbols: AAPL, MSFT"),
        "/api/v1/prices/A..B": (400, "bad symbol"),
        "/api/v1/prices/A.B": (404, "unknown symbol A.B"),  # a real-ticker spelling, just not known here
        "/api/v1/history/AAPL?limit=0": (422, "limit"),
        "/api/v1/history/AAPL?limit=abc": (422, "limit"),
        "/api/v1/candles/AAPL?interval=7m": (400, "no 7m candles"),
        "/api/v1/candles/AAPL?interval=NaN": (400, "bad candle interval"),
        "/api/v1/nowhere": (404, "Not Found"),
    }
    for path, (status, needle) in cases.items():
        resp = get(stack, path, tok)
        assert resp.status_code == status, (path, resp.text)
        assert needle in resp.json()["detail"], (path, resp.text)


def test_openapi_spec_is_served(stack: GatewayStack) -> None:
    spec = httpx.get(f"{stack.base}/openapi.json", timeout=10).json()

    assert "/api/v1/prices" in spec["paths"]


def test_two_gateways_serve_the_same_data(stack: GatewayStack, daemons, tmp_path: Path) -> None:
    other = stack.settings.model_copy(update={"gateway_port": infra.free_port(), "ws_port": infra.free_port()})
    other = Settings(**{**other.model_dump(), "home": tmp_path / "home2"})
    other.ensure_dirs()
    daemons("gateway", other)
    tok = token(stack)

    a = {q["symbol"] for q in get(stack, "/api/v1/prices", tok).json()}
    b = {q["symbol"] for q in get(stack, "/api/v1/prices", tok, base=other.gateway_url).json()}

    assert a == b == {"AAPL", "MSFT"}


# --- WebSocket ----------------------------------------------------------------------------


async def recv_json(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, pred, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        if pred(msg):
            return msg


def test_ws_auth_subscribe_snapshot_updates_unsubscribe(stack: GatewayStack) -> None:
    tok = token(stack)

    async def scenario() -> None:
        async with websockets.connect(stack.ws) as ws:
            await ws.send(json.dumps({"op": "auth", "token": tok}))
            assert (await recv_json(ws))["type"] == "welcome"
            await ws.send(json.dumps({"op": "subscribe", "channels": ["quotes:AAPL"], "id": 7}))
            first = await recv_until(ws, lambda m: m["type"] in ("snapshot", "subscribed"))
            got = [first, await recv_until(ws, lambda m: m["type"] in ("snapshot", "subscribed"))]
            snap = next(m for m in got if m["type"] == "snapshot")
            ack = next(m for m in got if m["type"] == "subscribed")
            assert snap["channel"] == "quotes:AAPL" and snap["data"]["symbol"] == "AAPL"
            assert ack["id"] == 7 and ack["channels"] == ["quotes:AAPL"]
            q1 = await recv_until(ws, lambda m: m["type"] == "quote")
            q2 = await recv_until(ws, lambda m: m["type"] == "quote")
            assert q2["data"]["seq"] > q1["data"]["seq"] >= snap["data"]["seq"]

            await ws.send(json.dumps({"op": "unsubscribe", "channels": ["quotes:AAPL"]}))
            await recv_until(ws, lambda m: m["type"] == "unsubscribed")
            with pytest.raises(TimeoutError):
                await recv_until(ws, lambda m: m["type"] == "quote", timeout=0.5)

    asyncio.run(scenario())


def test_ws_token_in_header_and_ping_pong(stack: GatewayStack) -> None:
    tok = token(stack)

    async def scenario() -> None:
        async with websockets.connect(stack.ws, additional_headers={"Authorization": f"Bearer {tok}"}) as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            await ws.send(json.dumps({"op": "ping", "id": "x"}))
            assert await recv_json(ws) == {"type": "pong", "id": "x"}

    asyncio.run(scenario())


def test_ws_bad_frames_get_error_frames_and_the_connection_stays(stack: GatewayStack) -> None:
    tok = token(stack)
    bad = [
        "not json",
        json.dumps({"op": "subscribe", "channels": ["weather:AAPL"]}),
        json.dumps({"op": "subscribe", "channels": ["quotes:NOPE"]}),
        json.dumps({"op": "subscribe", "channels": ["candles:AAPL:7m"]}),
        json.dumps({"op": "fly"}),
        json.dumps({"op": "subscribe", "channels": "quotes:AAPL"}),
        json.dumps({"op": "subscribe", "channels": [], "extra": 1}),
        json.dumps([1, 2, 3]),
    ]

    async def scenario() -> list[dict]:
        errors = []
        async with websockets.connect(stack.ws) as ws:
            await ws.send(json.dumps({"op": "auth", "token": tok}))
            await recv_json(ws)
            for msg in bad:
                await ws.send(msg)
                errors.append(await recv_until(ws, lambda m: m["type"] == "error"))
            await ws.send(json.dumps({"op": "ping"}))
            assert (await recv_until(ws, lambda m: m["type"] == "pong"))["type"] == "pong"
        return errors

    errors = asyncio.run(scenario())

    assert len(errors) == len(bad)
    assert all(e["detail"] for e in errors)
    assert "known symbols" in errors[2]["detail"]


def test_ws_without_valid_token_is_closed_4401(stack: GatewayStack) -> None:
    async def close_code(first: str | None, headers: dict | None = None) -> int:
        async with websockets.connect(stack.ws, additional_headers=headers or {}) as ws:
            if first is not None:
                await ws.send(first)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 15)
            return info.value.rcvd.code

    assert asyncio.run(close_code(json.dumps({"op": "subscribe", "channels": ["quotes:AAPL"]}))) == 4401
    assert asyncio.run(close_code(json.dumps({"op": "auth", "token": "x.y.z"}))) == 4401
    assert asyncio.run(close_code(None, {"Authorization": "Bearer nope"})) == 4401


def test_ws_oversized_message_closes_with_1009(stack: GatewayStack) -> None:
    tok = token(stack)

    async def scenario() -> int:
        async with websockets.connect(stack.ws) as ws:
            await ws.send(json.dumps({"op": "auth", "token": tok}))
            await recv_json(ws)
            await ws.send(json.dumps({"op": "ping", "id": "x" * (stack.settings.ws_max_message_bytes + 10)}))
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            return info.value.rcvd.code

    assert asyncio.run(scenario()) == 1009


def test_a_slow_client_does_not_delay_a_fast_one(clean, tmp_path: Path, daemons) -> None:
    # Arrange: a busy market, one client that reads nothing, one that reads everything.
    settings = gateway_settings(clean, tmp_path / "home", rate=400, symbols=["AAPL", "MSFT", "TSLA"])
    for name in ("processor", "publisher", "auth", "gateway"):
        daemons(name, settings)
    s = GatewayStack(settings, {})
    wait_for(lambda: len(get(s, "/api/v1/prices", token(s)).json()) == 3, 20)
    tok = token(s)
    channels = ["quotes:AAPL", "quotes:MSFT", "quotes:TSLA"]

    async def scenario() -> tuple[dict[str, list[int]], list[float]]:
        async with (
            websockets.connect(s.ws, max_queue=1) as slow,
            websockets.connect(s.ws, max_queue=None) as fast,
        ):
            for ws in (slow, fast):
                await ws.send(json.dumps({"op": "auth", "token": tok}))
                await ws.send(json.dumps({"op": "subscribe", "channels": channels}))
            # Stop reading `slow`: its socket buffers fill and the gateway must queue for it.
            slow.transport.pause_reading()
            seqs: dict[str, list[int]] = {c: [] for c in channels}
            arrivals: list[float] = []
            end = time.monotonic() + 4
            while time.monotonic() < end:
                msg = json.loads(await asyncio.wait_for(fast.recv(), 5))
                if msg["type"] == "quote":
                    seqs[msg["channel"]].append(msg["data"]["seq"])
                    arrivals.append(time.monotonic())
            return seqs, arrivals

    seqs, arrivals = asyncio.run(scenario())

    # Assert: the fast client got every quote of every symbol, in order, none skipped for the
    # slow one, and never waited long for the next (latency figures live in `bench ws`).
    for channel, got in seqs.items():
        assert len(got) > 300, (channel, len(got))
        assert got == list(range(got[0], got[0] + len(got))), f"{channel}: quotes skipped or reordered"
    assert max(b - a for a, b in itertools.pairwise(arrivals)) < 1.0


def test_stream_client_reconnects_after_a_gateway_restart(stack: GatewayStack, tmp_path: Path) -> None:
    from stockctl.instance.registry import write_instance
    from stockctl.sdk.stream import stream

    write_instance(stack.settings)  # what the supervisor does: the client finds the gateway here
    tok = token(stack)

    async def scenario() -> list[int]:
        seqs: list[int] = []
        restarted = False
        async for kind, _channel, data in stream(stack.settings, ["quotes:MSFT"], token=tok):
            if kind != "quote":
                continue
            seqs.append(json.loads(bytes(data))["seq"])
            if len(seqs) == 3 and not restarted:
                restarted = True
                gw = stack.daemons["gateway"]
                gw.terminate()
                gw.start()
            if len(seqs) >= 6:
                return seqs
        return seqs

    seqs = asyncio.run(asyncio.wait_for(scenario(), 60))

    assert len(seqs) >= 6 and seqs == sorted(seqs)


def test_a_disabled_user_is_refused_at_once_on_rest_and_websocket(stack: GatewayStack) -> None:
    from stockctl.auth.users import set_disabled
    from stockctl.instance.registry import write_instance

    tok = token(stack, "eve@example.com")
    assert get(stack, "/api/v1/prices", tok).status_code == 200
    write_instance(stack.settings)  # the operator command finds the instance's Redis here

    set_disabled(stack.settings, "eve@example.com", True)

    resp = get(stack, "/api/v1/prices", tok)
    assert resp.status_code == 403 and "disabled" in resp.json()["detail"]

    async def close_code() -> int:
        async with websockets.connect(stack.ws) as ws:
            await ws.send(json.dumps({"op": "auth", "token": tok}))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            return info.value.rcvd.code

    assert asyncio.run(close_code()) == 4403
    set_disabled(stack.settings, "eve@example.com", False)
    assert get(stack, "/api/v1/prices", tok).status_code == 200


def test_an_oversized_body_is_refused_before_it_is_read(stack: GatewayStack) -> None:
    # Arrange
    headers = {"Authorization": f"Bearer {token(stack)}", "Content-Type": "application/json"}
    huge = b'{"market":"' + b"A" * (2 * 1024 * 1024) + b'"}'

    def chunked() -> object:  # no Content-Length: the limit must hold for a streamed body too
        for i in range(0, len(huge), 64 * 1024):
            yield huge[i : i + 64 * 1024]

    # Act
    declared = httpx.post(f"{stack.base}/api/v1/orders", content=huge, headers=headers, timeout=30)
    streamed = httpx.post(f"{stack.base}/api/v1/orders", content=chunked(), headers=headers, timeout=30)
    login = httpx.post(f"{stack.base}/auth/login", content=huge, headers=headers, timeout=30)

    # Act: a declared 100 MB body that never comes is refused at once, not awaited
    host, port = stack.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n{"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head[:100]

    # Assert: 413 with a reason each time, and the gateway serves on
    for resp in (declared, streamed, login):
        assert resp.status_code == 413, (resp.status_code, resp.text[:200])
        assert resp.json()["error"] == "too_large"
    assert get(stack, "/api/v1/prices", token(stack)).status_code == 200


def test_ws_reauth_as_another_user_is_refused_and_the_connection_stays_its_own(stack: GatewayStack) -> None:
    ada, bob = token(stack, "ada@example.com"), token(stack, "bob@example.com")

    async def scenario() -> tuple[dict, dict, dict]:
        async with websockets.connect(stack.ws) as ws:
            await ws.send(json.dumps({"op": "auth", "token": ada}))
            await recv_until(ws, lambda m: m["type"] == "welcome")
            await ws.send(json.dumps({"op": "auth", "token": bob, "id": 1}))
            refused = await recv_until(ws, lambda m: m.get("id") == 1)
            await ws.send(json.dumps({"op": "auth", "token": ada, "id": 2}))  # a fresh token of the same user is fine
            again = await recv_until(ws, lambda m: m.get("id") == 2 or m["type"] == "welcome")
            await ws.send(json.dumps({"op": "ping", "id": 3}))
            pong = await recv_until(ws, lambda m: m.get("id") == 3)
            return refused, again, pong

    refused, again, pong = asyncio.run(scenario())

    assert refused["type"] == "error" and "another user" in refused["detail"]
    assert again["type"] == "welcome" and again["email"] == "ada@example.com"
    assert pong["type"] == "pong"


def test_ws_login_while_redis_is_down_is_closed_try_again_later(own_servers, tmp_path: Path, daemons) -> None:
    # Arrange
    settings = gateway_settings(own_servers, tmp_path / "home")
    for name in ("auth", "gateway"):
        daemons(name, settings)
    s = GatewayStack(settings, {})
    tok = token(s)
    own_servers.redis.stop()

    # Act
    async def connect() -> tuple[int | None, str]:
        async with websockets.connect(s.ws, additional_headers={"Authorization": f"Bearer {tok}"}) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""
        return None, "not closed"

    code, reason = asyncio.run(connect())

    # Assert: "try again later", not a crash (1011) of the connection handler
    assert code == 1013 and "storage unavailable" in reason, (code, reason)


# Test-only fault injection, loaded by the gateway process alone (a sitecustomize on its
# PYTHONPATH): once the trigger file exists, uvicorn's serving loop fails as a crash would,
# or ends as if told to exit. Nothing in the product knows about it.
_DIE_ON_CUE = """
import os

import uvicorn.server

_on_tick = uvicorn.server.Server.on_tick


async def on_tick(self, counter):
    if os.path.exists({trigger!r}):
        open({trigger!r} + ".fired", "w").close()
        {action}
    return await _on_tick(self, counter)


uvicorn.server.Server.on_tick = on_tick
"""


@pytest.mark.parametrize(
    "action", ['raise RuntimeError("injected: the HTTP server crashed")', "return True"], ids=["raises", "returns"]
)
def test_the_gateway_exits_1_when_its_http_server_stops_by_itself(clean, tmp_path: Path, daemons, action: str) -> None:
    # Arrange: auth, and a gateway whose uvicorn loop dies on cue
    settings = stack_settings(clean, tmp_path / "home")
    daemons("auth", settings)
    hook, trigger = tmp_path / "hook", tmp_path / "die-now"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_DIE_ON_CUE.format(trigger=str(trigger), action=action))
    gateway = daemons("gateway", settings, start=False)
    gateway.env_overrides["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    gateway.start()
    assert httpx.get(f"{settings.gateway_url}/healthz", timeout=5).status_code == 200

    # Act
    trigger.touch()

    # Assert: the injection fired, and the process ends with 1 so the supervisor restarts it,
    # instead of living on with its WebSocket side only
    wait_for(lambda: Path(f"{trigger}.fired").exists(), 20, what="the injected failure")
    wait_for(lambda: gateway.proc.poll() is not None, 20, what="the gateway to exit")
    assert gateway.proc.returncode == 1, gateway.log()
    assert "the HTTP server stopped by itself" in gateway.log()
