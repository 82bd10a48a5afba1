"""The edge, probed as an attacker would (issue 10, items 2, 4, 5 and 7), with real daemons.

* every exchange event reaches each client and channel exactly once;
* the login and registration throttles count the real client address, whatever
  ``X-Forwarded-For`` says, directly at auth and through the gateway;
* a disabled account's open sockets close with 4403 at once (NATS announcement) or
  within a few periods of the gateway's own check when the announcement is lost;
* identifiers are matched whole, a mid-body disconnect is one debug line, look-alike
  emails are refused, and the auth proxy never leaves ``/auth/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import websockets

from stockctl.instance import infra
from stockctl.settings import Settings
from stockctl.wire import names
from tests.support.stack import REPO, stack_settings, wait_for, wipe_exchange

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@dataclass
class Edge:
    settings: Settings
    procs: dict

    @property
    def gateway(self) -> str:
        return self.settings.gateway_url

    @property
    def auth(self) -> str:
        return self.settings.effective_auth_url

    def register(self, email: str, base: str | None = None) -> dict:
        resp = httpx.post(
            f"{base or self.gateway}/auth/register", json={"email": email, "password": PASSWORD}, timeout=10
        )
        assert resp.status_code == 201, resp.text
        return resp.json()

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.effective_redis_url)


def start(servers, tmp_path: Path, daemons, names_: tuple[str, ...] = ("matching", "auth", "gateway"), **kw) -> Edge:
    wipe_exchange(servers)
    settings = stack_settings(servers, tmp_path / "home", **kw)
    return Edge(settings, {n: daemons(n, settings) for n in names_})


def error_of(resp: httpx.Response) -> tuple[int, str]:
    body = resp.json()
    assert set(body) == {"error", "detail"}, body
    return resp.status_code, body["error"]


# --- item 2: each event once ------------------------------------------------------------------


def test_each_event_arrives_once_per_client_and_channel(servers, tmp_path: Path, daemons) -> None:
    # Arrange: the maker listens on all three channels, the taker on two, an observer on the public ones.
    edge = start(servers, tmp_path, daemons)
    maker, taker, observer = "maker@example.com", "taker@example.com", "observer@example.com"
    tokens = {e: edge.register(e)["access_token"] for e in (maker, taker, observer)}
    channels = {
        maker: ["orders", "trades:TATA_INR", "book:TATA_INR"],
        taker: ["orders", "trades:TATA_INR"],
        observer: ["trades:TATA_INR", "book:TATA_INR"],
    }
    rounds = 4

    def order(email: str, side: str, price: str) -> int:
        resp = httpx.post(
            f"{edge.gateway}/api/v1/orders",
            json={"market": "TATA_INR", "side": side, "qty": "2", "price": price},
            headers={"Authorization": f"Bearer {tokens[email]}"},
            timeout=15,
        )
        assert resp.status_code == 201, resp.text
        return resp.json()["order_id"]

    async def listen(email: str, ready: asyncio.Event, done: asyncio.Event) -> list[dict]:
        frames: list[dict] = []
        async with websockets.connect(edge.settings.ws_url) as ws:
            await ws.send(json.dumps({"op": "auth", "token": tokens[email]}))
            await ws.send(json.dumps({"op": "subscribe", "channels": channels[email], "id": 1}))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["type"] == "subscribed":
                    break
            ready.set()
            while True:  # after the last trade, wait until the socket has been quiet for 1.5 s
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 1.5 if done.is_set() else 15))
                except TimeoutError:
                    if done.is_set():
                        return frames
                    raise
                if msg.get("channel") and msg["type"] != "snapshot":
                    frames.append(msg)

    async def scenario() -> dict[str, list[dict]]:
        readies = {e: asyncio.Event() for e in channels}
        done = asyncio.Event()
        tasks = {e: asyncio.create_task(listen(e, readies[e], done)) for e in channels}
        await asyncio.gather(*(r.wait() for r in readies.values()))
        for i in range(rounds):  # real trades: the taker crosses each resting maker order
            price = f"{100 + i}.05"
            await asyncio.to_thread(order, maker, "buy", price)
            await asyncio.to_thread(order, taker, "sell", price)
        done.set()
        return {e: await t for e, t in tasks.items()}

    # Act
    got = asyncio.run(asyncio.wait_for(scenario(), 90))

    # Assert: no (channel, market, seq) twice, and every channel got what happened
    for email, frames in got.items():
        keys = Counter((f["channel"], f["data"]["market"], f["data"]["seq"]) for f in frames)
        repeated = {k: n for k, n in keys.items() if n > 1}
        assert not repeated, f"{email} got frames more than once: {repeated}"
        by_channel = Counter(f["channel"] for f in frames)
        if "trades:TATA_INR" in channels[email]:
            assert by_channel["trades:TATA_INR"] == rounds, (email, by_channel)
        if "book:TATA_INR" in channels[email]:
            assert by_channel["book:TATA_INR"] >= rounds, (email, by_channel)
        if "orders" in channels[email]:
            events = Counter(f["data"]["event"] for f in frames if f["channel"] == "orders")
            assert events["accepted"] == rounds and events["trade"] == rounds, (email, events)


def test_quotes_of_a_listed_market_can_be_subscribed_before_its_first_trade(servers, tmp_path: Path, daemons) -> None:
    # Arrange: a fresh exchange, so TATA_INR is listed but has never traded (no quote yet).
    edge = start(servers, tmp_path, daemons, ("matching", "processor", "auth", "gateway"))
    maker, taker = "maker@example.com", "taker@example.com"
    tokens = {e: edge.register(e)["access_token"] for e in (maker, taker)}
    assert not edge.redis().sismember(names.SYMBOLS_KEY, "TATA_INR")

    def order(email: str, side: str) -> None:
        resp = httpx.post(
            f"{edge.gateway}/api/v1/orders",
            json={"market": "TATA_INR", "side": side, "qty": "2", "price": "101.05"},
            headers={"Authorization": f"Bearer {tokens[email]}"},
            timeout=15,
        )
        assert resp.status_code == 201, resp.text

    async def scenario() -> tuple[dict, dict, dict]:
        async with websockets.connect(edge.settings.ws_url) as ws:
            await ws.send(json.dumps({"op": "auth", "token": tokens[maker]}))
            await ws.send(json.dumps({"op": "subscribe", "channels": ["quotes:TATA_INR"], "id": 1}))
            while (subscribed := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] not in (
                "subscribed",
                "error",
            ):
                pass
            await ws.send(json.dumps({"op": "subscribe", "channels": ["quotes:NOPE_INR"], "id": 2}))
            while (refused := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "error":
                pass
            await asyncio.to_thread(order, maker, "buy")
            await asyncio.to_thread(order, taker, "sell")
            while (first := json.loads(await asyncio.wait_for(ws.recv(), 15)))["type"] == "snapshot":
                pass
            return subscribed, refused, first

    # Act
    subscribed, refused, first = asyncio.run(asyncio.wait_for(scenario(), 60))

    # Assert: subscribed with no snapshot to wait for; the first trade is the first quote;
    # a symbol that is neither priced nor listed is still refused with the known ones named.
    assert subscribed["type"] == "subscribed", subscribed
    assert "known symbols" in json.dumps(refused), refused
    assert first["channel"] == "quotes:TATA_INR" and first["data"]["price"] == "101.05", first


# --- item 4: the throttles count the real address ------------------------------------------------


def login(base: str, email: str, forwarded: str | None = None, source: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    transport = httpx.HTTPTransport(local_address=source) if source else None
    with httpx.Client(transport=transport, timeout=15) as http:
        return http.post(f"{base}/auth/login", json={"email": email, "password": PASSWORD}, headers=headers)


def test_rotating_forwarded_for_does_not_escape_the_login_throttle(servers, tmp_path: Path, daemons) -> None:
    edge = start(
        servers, tmp_path, daemons, ("auth", "gateway"), trusted_proxies=["127.0.0.3"], login_max_failures_per_ip=10
    )
    limit = edge.settings.login_max_failures_per_ip
    edge.register("ada@example.com")
    r = edge.redis()

    for base in (edge.auth, edge.gateway):  # directly at auth, then through the gateway
        for key in r.scan_iter(f"{names.AUTH}:fail:*"):
            r.delete(key)
        # Act: 40 wrong logins, each for another email (the per-email limit never bites), each
        # claiming to come from another address
        statuses = [login(base, f"nobody{i}@example.com", forwarded=f"198.51.100.{i}").status_code for i in range(40)]

        assert statuses == [401] * limit + [429] * (40 - limit), (base, statuses)
        throttled = login(base, "ada@example.com", forwarded="203.0.113.77")
        assert error_of(throttled) == (429, "too_many_attempts")
        assert int(throttled.headers["Retry-After"]) > 0

    # The gateway passes the real peer on: another loopback address is not locked out through it...
    assert login(edge.gateway, "ada@example.com", source="127.0.0.2").status_code == 200
    # ...nor when it talks to auth directly, and a header from an untrusted peer changes nothing.
    assert login(edge.auth, "ada@example.com", source="127.0.0.2", forwarded="127.0.0.1").status_code == 200
    # A proxy named in STOCKCTL_TRUSTED_PROXIES is believed, at auth and at the gateway.
    for base in (edge.auth, edge.gateway):
        assert login(base, "ada@example.com", source="127.0.0.3", forwarded="198.51.100.250").status_code == 200
        assert login(base, "ada@example.com", source="127.0.0.3", forwarded="127.0.0.1").status_code == 429


def test_a_client_cannot_forge_the_gateways_proxy_secret(servers, tmp_path: Path, daemons) -> None:
    edge = start(servers, tmp_path, daemons, ("auth",), login_max_failures_per_ip=3)
    statuses = []
    for i in range(6):
        headers = {"X-Forwarded-For": f"198.51.100.{i}", "X-Stockctl-Proxy-Secret": "guessed"}
        resp = httpx.post(
            f"{edge.auth}/auth/login", json={"email": f"x{i}@example.com", "password": PASSWORD}, headers=headers
        )
        statuses.append(resp.status_code)

    assert statuses == [401, 401, 401, 429, 429, 429]
    secret_file = edge.settings.secrets_dir / "gateway-proxy.key"  # the real one is private to the instance
    assert secret_file.stat().st_mode & 0o777 == 0o600


def test_registrations_per_address_are_throttled_with_429(servers, tmp_path: Path, daemons) -> None:
    edge = start(servers, tmp_path, daemons, ("matching", "auth", "gateway"), register_max_per_ip=3)

    for i in range(3):  # rotating X-Forwarded-For is no way around it
        resp = httpx.post(
            f"{edge.auth}/auth/register",
            json={"email": f"u{i}@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text

    direct = httpx.post(f"{edge.auth}/auth/register", json={"email": "u3@example.com", "password": PASSWORD})
    via_gateway = httpx.post(f"{edge.gateway}/auth/register", json={"email": "u4@example.com", "password": PASSWORD})

    for resp in (direct, via_gateway):
        assert error_of(resp) == (429, "too_many_registrations")
        assert 0 < int(resp.headers["Retry-After"]) <= edge.settings.register_window_s
    assert edge.redis().scard(names.USERS_KEY) == 3  # nothing was created, no demo money handed out
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10) as other:
        resp = other.post(f"{edge.gateway}/auth/register", json={"email": "u5@example.com", "password": PASSWORD})
    assert resp.status_code == 201, resp.text  # another client of the gateway has its own allowance


# --- item 5: disable means now ---------------------------------------------------------------------


def operator(edge: Edge, *args: str, nats_url: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "STOCKCTL_HOME": str(edge.settings.home),
        "STOCKCTL_REDIS_URL": edge.settings.effective_redis_url,
        "STOCKCTL_NATS_URL": nats_url or edge.settings.effective_nats_url,
        "STOCKCTL_DISABLED_CHECK_S": str(edge.settings.model_dump().get("disabled_check_s", 5.0)),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "stockctl", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )


async def open_socket(edge: Edge, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(edge.settings.ws_url)
    await ws.send(json.dumps({"op": "auth", "token": token}))
    await ws.send(json.dumps({"op": "subscribe", "channels": ["orders"], "id": 1}))
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "subscribed":
        pass
    return ws


async def closed_within(ws: websockets.ClientConnection, timeout: float) -> tuple[int, float]:
    """Close code and seconds until the server closed ``ws``."""
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return info.value.rcvd.code, time.monotonic() - started


def test_disable_closes_an_open_socket_at_once(servers, tmp_path: Path, daemons) -> None:
    # The periodic check is slow here: only the announcement can explain a prompt close.
    edge = start(servers, tmp_path, daemons, disabled_check_s=120)
    doc = edge.register("eve@example.com")
    bystander = edge.register("bob@example.com")["access_token"]

    async def scenario() -> tuple[int, float, subprocess.CompletedProcess, bool]:
        ws = await open_socket(edge, doc["access_token"])
        other = await open_socket(edge, bystander)
        done = await asyncio.to_thread(operator, edge, "users", "disable", "eve@example.com")
        code, after = await closed_within(ws, 10)
        await other.send(json.dumps({"op": "ping"}))
        alive = json.loads(await asyncio.wait_for(other.recv(), 5))["type"] == "pong"
        await other.close()
        return code, after, done, alive

    code, after, done, bystander_alive = asyncio.run(scenario())

    assert done.returncode == 0, done.stderr
    assert "open connections are closed now" in done.stdout
    assert code == 4403
    assert after < 1.0, f"closed {after:.2f} s after the operator command returned"
    assert bystander_alive
    resp = httpx.get(f"{edge.gateway}/api/v1/balances", headers={"Authorization": f"Bearer {doc['access_token']}"})
    assert error_of(resp)[0] == 403


@pytest.mark.parametrize("how", ["nats_unreachable", "redis_only"])
def test_without_the_announcement_the_periodic_check_closes_the_socket(
    how: str, servers, tmp_path: Path, daemons
) -> None:
    period = 1.0
    edge = start(servers, tmp_path, daemons, disabled_check_s=period)
    doc = edge.register("eve@example.com")
    bystander = edge.register("bob@example.com")["access_token"]

    async def scenario() -> tuple[int, float, bool]:
        ws = await open_socket(edge, doc["access_token"])
        other = await open_socket(edge, bystander)
        await asyncio.sleep(3 * period)  # several checks pass while nobody is disabled: nothing closes
        if how == "redis_only":
            edge.redis().sadd(names.DISABLED_KEY, "eve@example.com")
        else:
            dead = f"nats://127.0.0.1:{infra.free_port()}"
            done = await asyncio.to_thread(operator, edge, "users", "disable", "eve@example.com", nats_url=dead)
            assert done.returncode == 0, done.stderr
            assert f"closed within {period:g} s" in done.stdout
        code, after = await closed_within(ws, 15)
        await other.send(json.dumps({"op": "ping"}))
        alive = json.loads(await asyncio.wait_for(other.recv(), 5))["type"] == "pong"
        await other.close()
        return code, after, alive

    code, after, bystander_alive = asyncio.run(scenario())

    assert code == 4403
    assert after <= 4 * period, f"closed after {after:.2f} s with a {period} s check"
    assert bystander_alive


def test_an_order_on_an_open_socket_of_a_disabled_account_is_refused_before_any_check(
    servers, tmp_path: Path, daemons
) -> None:
    edge = start(servers, tmp_path, daemons, disabled_check_s=120)  # neither check nor announcement helps
    doc = edge.register("eve@example.com")
    order = {"market": "TATA_INR", "side": "buy", "qty": "1", "price": "99.05"}

    async def scenario() -> tuple[dict, int, int]:
        ws = await open_socket(edge, doc["access_token"])
        other = await open_socket(edge, doc["access_token"])
        await ws.send(json.dumps({"op": "place", "order": order, "id": 1}))
        while (first := json.loads(await asyncio.wait_for(ws.recv(), 15)))["type"] != "order_result":
            pass
        edge.redis().sadd(names.DISABLED_KEY, "eve@example.com")
        await ws.send(json.dumps({"op": "place", "order": order, "id": 2}))
        code, _ = await closed_within(ws, 10)
        change = {"op": "amend", "order_id": first["order_id"], "market": "TATA_INR", "price": "99.10", "id": 3}
        await other.send(json.dumps(change))
        amend_code, _ = await closed_within(other, 10)
        return first, code, amend_code

    first, code, amend_code = asyncio.run(scenario())

    assert first["code"] == 201
    assert code == amend_code == 4403
    edge.redis().srem(names.DISABLED_KEY, "eve@example.com")
    mine = httpx.get(f"{edge.gateway}/api/v1/orders", headers={"Authorization": f"Bearer {doc['access_token']}"})
    # The second order was never placed, and the first was not amended.
    assert [(o["order_id"], o["price"]) for o in mine.json()] == [(first["order_id"], "99.05")]


# --- item 7: small holes ---------------------------------------------------------------------------


def test_a_client_order_id_with_a_trailing_newline_is_refused(servers, tmp_path: Path, daemons) -> None:
    edge = start(servers, tmp_path, daemons)
    token = edge.register("ada@example.com")["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"market": "TATA_INR", "side": "buy", "qty": "1", "price": "99.05"}

    bad = httpx.post(f"{edge.gateway}/api/v1/orders", json={**body, "client_order_id": "X\n"}, headers=headers)
    good = httpx.post(f"{edge.gateway}/api/v1/orders", json={**body, "client_order_id": "X"}, headers=headers)

    assert error_of(bad) == (400, "usageerror")
    assert "client_order_id" in bad.json()["detail"]
    assert good.status_code == 201, good.text
    assert good.json()["client_order_id"] == "X"


def raw_http(port: int, request: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if not read:
            return b""
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_a_disconnect_mid_body_is_one_debug_line_not_a_traceback(servers, tmp_path: Path, daemons) -> None:
    edge = start(servers, tmp_path, daemons, ("auth", "gateway"))
    token = edge.register("ada@example.com")["access_token"]
    before = edge.procs["gateway"].log()
    port = edge.settings.gateway_port

    for path in ("/api/v1/orders", "/api/v1/alerts", "/auth/login"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        ).encode()
        raw_http(port, head + b'{"market":', read=False)  # and hang up

    wait_for(lambda: edge.procs["gateway"].log().count("client disconnected") >= 3, 10, what="three debug lines")
    time.sleep(0.5)
    new = edge.procs["gateway"].log()[len(before) :]
    assert "Traceback" not in new, new[-3000:]
    assert "ClientDisconnect" not in new
    lines = [line for line in new.splitlines() if "client disconnected" in line]
    assert len(lines) == 3 and all("DEBUG" in line for line in lines), lines


def test_lookalike_emails_are_refused(servers, tmp_path: Path, daemons) -> None:
    edge = start(servers, tmp_path, daemons, ("auth",))
    edge.register("alice@example.com", base=edge.auth)
    edge.register("ape@example.com", base=edge.auth)

    def register(email: str) -> httpx.Response:
        return httpx.post(f"{edge.auth}/auth/register", json={"email": email, "password": PASSWORD}, timeout=10)

    fullwidth = register("\uff41lice@example.com")  # ａlice: NFKC makes it alice
    mixed = register("\u0430lice@example.com")  # Cyrillic а among Latin letters
    cyrillic = register("\u0430\u0440\u0435@example.com")  # аре, all Cyrillic: looks exactly like ape

    assert error_of(fullwidth) == (409, "email_taken")
    assert error_of(mixed) == (422, "invalid_email")
    assert "mixes scripts" in mixed.json()["detail"]
    assert error_of(cyrillic) == (409, "email_lookalike")
    assert sorted(e.decode() for e in edge.redis().smembers(names.USERS_KEY)) == [
        "alice@example.com",
        "ape@example.com",
    ]
    # The fullwidth form is the same account: it logs in.
    assert login(edge.auth, "\uff41lice@example.com").status_code == 200


def test_the_auth_proxy_stays_inside_auth(servers, tmp_path: Path, daemons) -> None:
    edge = start(servers, tmp_path, daemons, ("auth", "gateway"))
    paths = ["/auth/../healthz", "/auth/%2e%2e/healthz", "/auth/%2E%2e/healthz", "/auth/.%2e/healthz"]
    paths += ["/auth/%252e%252e/healthz", "/auth/x/../../healthz", "/auth/..%2fhealthz"]

    for path in paths:
        raw = raw_http(
            edge.settings.gateway_port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )

        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404"), (path, raw[:300])
        assert json.loads(body)["error"] == "not_found", path
        assert b'"redis"' not in body  # auth's /healthz was not reached
    assert httpx.get(f"{edge.gateway}/auth/jwks.json", timeout=10).status_code == 200  # the proxy still works
