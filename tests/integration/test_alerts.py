"""Price alerts end to end: real NATS and Valkey, processor, auth, gateway and alerts daemons as processes.

Ticks are published straight onto ``md.tick.<SYM>`` (no simulated publisher), so every price
is chosen by the test. Each test uses its own symbols and users on one shared stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import redis
import websockets
from textual.widgets import Input, Label, Select, Static

from stockctl.instance.registry import write_instance
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.marketdata import Tick, encode
from tests.support.pilot import until as until_app
from tests.support.stack import REPO, Daemon, Servers, _delete_stream, stack_settings
from tui.app import StockApp, make_app
from tui.demo import demo_data
from tui.screens.alert import AlertScreen
from tui.widgets.ticker_board import TickerBoard

pytestmark = pytest.mark.integration

PARTITIONS = Settings.model_fields["partitions"].default

PASSWORD = "correct horse battery staple"
LIMIT = 5  # alerts per user on this stack, so the limit is quick to reach


@dataclass
class Stack:
    """The shared daemons, and the last tick sequence number published per symbol."""

    settings: Settings
    servers: Servers
    daemons: dict[str, Daemon]
    seqs: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def base(self) -> str:
        return self.settings.gateway_url

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.servers.redis_url)


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """processor, auth, gateway and alerts on free ports; SMA 2/4 so crossovers take a few ticks."""
    redis.Redis.from_url(servers.redis_url).flushall()
    asyncio.run(_delete_stream(servers.nats_url))
    settings = stack_settings(
        servers,
        tmp_path_factory.mktemp("alerts") / "home",
        sma_fast=2,
        sma_slow=4,
        alerts_per_user=LIMIT,
    )
    write_instance(settings)
    started: dict[str, Daemon] = {}
    try:
        for name in ("processor", "auth", "gateway", "alerts"):
            started[name] = Daemon(name, settings).start()
        yield Stack(settings, servers, started)
    finally:
        for d in started.values():
            if d.proc and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()


# --- helpers ----------------------------------------------------------------------------------


async def until(predicate: Callable[[], Awaitable[object]], timeout: float = 20.0, what: str = "") -> object:
    """Await ``predicate()`` until it is truthy (fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.05)


async def ticks(s: Stack, symbol: str, *prices: str) -> None:
    """Publish ticks of ``symbol`` at ``prices`` in order; return once the processor applied them all."""
    nc = await nats.connect(s.servers.nats_url)
    try:
        js = nc.jetstream()
        for price in prices:
            s.seqs[symbol] += 1
            seq = s.seqs[symbol]
            tick = Tick(symbol=symbol, price=price, ts=time.time_ns(), seq=seq)
            await js.publish(
                names.tick_subject(symbol, PARTITIONS), encode(tick), headers={"Nats-Msg-Id": f"{symbol}:{seq}"}
            )
    finally:
        await nc.close()
    r = s.redis()
    want = s.seqs[symbol]

    async def applied() -> bool:
        return int(r.hget(names.quote_key(symbol), "seq") or 0) == want

    await until(applied, 20, f"{symbol} tick {want} processed")


async def register(s: Stack, email: str) -> str:
    async with httpx.AsyncClient(base_url=s.base, timeout=10) as http:
        resp = await http.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return resp.json()["access_token"]


async def call(
    s: Stack, method: str, path: str, token: str | None, body: Any = None, raw: bytes | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=s.base, timeout=10) as http:
        if raw is not None:
            return await http.request(method, path, content=raw, headers=headers)
        return await http.request(method, path, json=body, headers=headers)


async def add(
    s: Stack, token: str, symbol: str, condition: str, threshold: Any = None, side: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"symbol": symbol, "condition": condition}
    if threshold is not None:
        body["threshold"] = threshold
    if side is not None:
        body["side"] = side
    resp = await call(s, "POST", "/api/v1/alerts", token, body)
    assert resp.status_code == 201, resp.text
    return resp.json()["alert"]


async def listing(s: Stack, token: str) -> dict[str, list[dict]]:
    resp = await call(s, "GET", "/api/v1/alerts", token)
    assert resp.status_code == 200, resp.text
    return resp.json()


@dataclass
class Feed:
    """A WebSocket client subscribed to its user's ``alerts`` channel, collecting frames."""

    frames: list[dict] = field(default_factory=list)

    def alerts(self) -> list[dict]:
        return [f["data"] for f in self.frames if f.get("type") == "alert"]

    def snapshot(self) -> dict | None:
        return next((f["data"] for f in self.frames if f.get("type") == "snapshot"), None)


@contextlib.asynccontextmanager
async def feed(s: Stack, token: str) -> AsyncIterator[Feed]:
    f = Feed()
    async with websockets.connect(s.settings.ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": token}))
        await ws.send(json.dumps({"op": "subscribe", "channels": ["alerts"], "id": 1}))

        async def read() -> None:
            async for raw in ws:
                f.frames.append(json.loads(raw))

        reader = asyncio.create_task(read())

        async def subscribed() -> bool:
            return any(m.get("type") == "subscribed" for m in f.frames)

        await until(subscribed, 10, "subscribed to alerts")
        try:
            yield f
        finally:
            reader.cancel()


def fired_in_redis(s: Stack, user: str) -> list[dict]:
    return [json.loads(raw) for raw in s.redis().lrange(names.fired_alerts_key(user), 0, -1)]


# --- firing -----------------------------------------------------------------------------------


async def test_an_above_alert_fires_exactly_once_on_its_owners_websocket_only(stack: Stack) -> None:
    # Arrange: AAA at 100; ada wants to know at 101.50; bob listens on his own channel.
    await ticks(stack, "AAA", "100.00")
    ada, bob = await register(stack, "ada@example.com"), await register(stack, "bob@example.com")
    resp = await call(
        stack, "POST", "/api/v1/alerts", ada, {"symbol": "aaa", "condition": "above", "threshold": "101.5"}
    )
    assert resp.status_code == 201, resp.text
    doc = resp.json()
    alert = doc["alert"]
    assert (alert["symbol"], alert["condition"], alert["threshold"], alert["status"]) == (
        "AAA",
        "above",
        "101.50",
        "active",
    )
    assert doc["last_price"] == "100.00" and doc.get("note") is None

    async with feed(stack, ada) as mine, feed(stack, bob) as theirs:
        assert [a["id"] for a in mine.snapshot()["active"]] == [alert["id"]]
        assert theirs.snapshot() == {"active": [], "fired": []}

        # Act: up to exactly the threshold, past it, and further up.
        await ticks(stack, "AAA", "101.49999999", "101.50", "102.00", "103.00")

        async def delivered() -> list[dict]:
            return mine.alerts()

        await until(delivered, 10, "fired alert on ada's socket")
        await asyncio.sleep(1.0)  # room for a duplicate to show up, if there were one

    # Assert: one frame, at the first price at or above the threshold; recorded as fired.
    (got,) = mine.alerts()
    assert (got["id"], got["status"], got["fired_price"], got["user"]) == (
        alert["id"],
        "fired",
        "101.50",
        "ada@example.com",
    )
    assert got["fired_seq"] == 3 and got["fired_ts"] >= alert["created"]
    assert theirs.alerts() == []
    after = await listing(stack, ada)
    assert after["active"] == [] and [a["id"] for a in after["fired"]] == [alert["id"]]
    assert after["fired"][0]["fired_price"] == "101.50"
    assert len(fired_in_redis(stack, "ada@example.com")) == 1


async def test_an_alert_set_beyond_the_price_fires_on_the_next_tick_with_a_note(stack: Stack) -> None:
    await ticks(stack, "BEY", "50.00")
    eve = await register(stack, "eve@example.com")

    resp = await call(stack, "POST", "/api/v1/alerts", eve, {"symbol": "BEY", "condition": "below", "threshold": "60"})
    assert resp.status_code == 201, resp.text
    assert "BEY is at 50.00 already" in resp.json()["note"]
    await asyncio.sleep(0.5)
    assert len((await listing(stack, eve))["active"]) == 1  # nothing fired on the old tick
    await ticks(stack, "BEY", "55.00")

    async def fired() -> list[dict]:
        return (await listing(stack, eve))["fired"]

    (done,) = await until(fired, 10, "below alert fired")
    assert done["fired_price"] == "55.00"


async def test_cross_sma_fires_on_the_next_crossover_of_the_wanted_side(stack: Stack) -> None:
    # Arrange: SMA 2/4; after 10, 10, 10, 9 the fast average is below the slow one.
    await ticks(stack, "XSMA", "10.00", "10.00", "10.00", "9.00")
    cy = await register(stack, "cy@example.com")
    either = await add(stack, cy, "XSMA", "cross-sma")
    sells = await add(stack, cy, "XSMA", "cross-sma", side="sell")

    async with feed(stack, cy) as f:
        # Act: 12 makes fast cross above slow (BUY); 8 then 5 cross back below (SELL).
        await ticks(stack, "XSMA", "12.00")

        async def one() -> list[dict]:
            return f.alerts()

        (first,) = await until(one, 10, "BUY crossover fires the cross-sma alert")
        active = [a["id"] for a in (await listing(stack, cy))["active"]]
        await ticks(stack, "XSMA", "8.00", "5.00")

        async def two() -> bool:
            return len(f.alerts()) == 2

        await until(two, 10, "SELL crossover fires the sell-only alert")

    # Assert
    assert (first["id"], first["signal"], first["fired_price"]) == (either["id"], "BUY", "12.00")
    assert active == [sells["id"]]  # a BUY crossover left the sell-only alert alone
    second = f.alerts()[1]
    assert (second["id"], second["signal"], second["fired_price"]) == (sells["id"], "SELL", "5.00")
    signals = [json.loads(x) for x in stack.redis().lrange(names.signals_key("XSMA"), 0, -1)]
    assert [(x["side"], x["seq"]) for x in signals] == [("BUY", 5), ("SELL", 7)]


# --- ownership and input ------------------------------------------------------------------------


async def test_another_user_can_neither_see_nor_delete_an_alert(stack: Stack) -> None:
    await ticks(stack, "PRIV", "20.00")
    ann, mal = await register(stack, "ann@example.com"), await register(stack, "mal@example.com")
    alert = await add(stack, ann, "PRIV", "above", "25")

    # Act / Assert: mal sees nothing, and deleting ann's alert looks exactly like an unknown id.
    assert await listing(stack, mal) == {"active": [], "fired": []}
    theirs = await call(stack, "DELETE", f"/api/v1/alerts/{alert['id']}", mal)
    unknown = await call(stack, "DELETE", "/api/v1/alerts/999999", mal)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"].replace(str(alert["id"]), "N") == unknown.json()["detail"].replace("999999", "N")
    assert [a["id"] for a in (await listing(stack, ann))["active"]] == [alert["id"]]
    assert (await call(stack, "GET", "/api/v1/alerts", None)).status_code == 401

    # ann removes it: gone, and a crossing no longer fires it.
    removed = await call(stack, "DELETE", f"/api/v1/alerts/{alert['id']}", ann)
    assert removed.status_code == 200 and removed.json()["id"] == alert["id"]
    assert (await call(stack, "DELETE", f"/api/v1/alerts/{alert['id']}", ann)).status_code == 404
    await ticks(stack, "PRIV", "30.00")
    await asyncio.sleep(1.0)
    assert await listing(stack, ann) == {"active": [], "fired": []}


async def test_bad_input_gets_a_4xx_with_the_reason(stack: Stack) -> None:
    await ticks(stack, "BAD", "100.00")
    tok = await register(stack, "typo@example.com")
    cases: list[tuple[Any, int, str]] = [
        ({"symbol": "NOPE", "condition": "above", "threshold": "1"}, 404, "unknown symbol NOPE; known symbols: "),
        ({"symbol": "B..AD", "condition": "above", "threshold": "1"}, 400, "bad symbol"),
        ({"symbol": "BAD", "condition": "above", "threshold": "NaN"}, 400, "not a positive decimal price"),
        ({"symbol": "BAD", "condition": "above", "threshold": "-1"}, 400, "not a positive decimal price"),
        ({"symbol": "BAD", "condition": "below", "threshold": "0"}, 400, "above zero"),
        ({"symbol": "BAD", "condition": "above", "threshold": "100000.01"}, 400, "absurdly far"),
        ({"symbol": "BAD", "condition": "above", "threshold": "9999999999999999"}, 400, "absurdly large"),
        ({"symbol": "BAD", "condition": "above", "threshold": "100.123456789"}, 400, "too many decimals"),
        # a JSON number is read from its digits (issue 14), never through a float that would round it
        ({"symbol": "BAD", "condition": "above", "threshold": 100.123456789}, 400, "too many decimals"),
        ({"symbol": "BAD", "condition": "above"}, 400, "need a price"),
        ({"symbol": "BAD", "condition": "sideways", "threshold": "1"}, 400, "bad condition 'sideways'"),
        ({"symbol": "BAD", "condition": "cross-sma", "threshold": "1"}, 400, "cross-sma takes no price"),
        ({"symbol": "BAD", "condition": "cross-sma", "side": "hold"}, 400, "bad side"),
        ({"symbol": "BAD", "condition": "above", "threshold": "101", "side": "buy"}, 400, "cross-sma only"),
        ({"symbol": "BAD", "condition": "above", "price": "101"}, 422, "unknown field"),
        (b"{not json", 422, "JSON"),
    ]
    for body, status, needle in cases:
        if isinstance(body, bytes):
            resp = await call(stack, "POST", "/api/v1/alerts", tok, raw=body)
        else:
            resp = await call(stack, "POST", "/api/v1/alerts", tok, body)
        assert resp.status_code == status, (body, resp.text)
        assert needle in resp.json()["detail"], (body, resp.text)
        if status == 404:
            assert "BAD" in resp.json()["detail"].split("known symbols: ")[1].split(", ")
    assert (await call(stack, "DELETE", "/api/v1/alerts/abc", tok)).status_code == 422
    assert await listing(stack, tok) == {"active": [], "fired": []}  # nothing was stored

    # The per-user limit: a clear 409, and room again after a removal.
    made = [await add(stack, tok, "BAD", "above", f"{101 + i}") for i in range(LIMIT)]
    over = await call(stack, "POST", "/api/v1/alerts", tok, {"symbol": "BAD", "condition": "above", "threshold": "200"})
    assert over.status_code == 409 and f"you have {LIMIT} active alerts, the most allowed" in over.json()["detail"]
    assert (await call(stack, "DELETE", f"/api/v1/alerts/{made[0]['id']}", tok)).status_code == 200
    await add(stack, tok, "BAD", "above", "200")
    assert len((await listing(stack, tok))["active"]) == LIMIT


# --- restarts and several daemons --------------------------------------------------------------


async def test_alerts_daemon_restart_neither_loses_nor_double_fires(stack: Stack) -> None:
    # Arrange: an alert, then the alerts daemon goes away.
    await ticks(stack, "RST", "40.00")
    dan = await register(stack, "dan@example.com")
    alert = await add(stack, dan, "RST", "below", "35")
    daemon = stack.daemons["alerts"]
    assert await asyncio.to_thread(daemon.terminate) == 0

    async with feed(stack, dan) as f:
        # Act: the price dips through the threshold and back while nobody watches; then it starts.
        await ticks(stack, "RST", "36.00", "34.90", "38.00", "41.00")
        await asyncio.sleep(0.5)
        assert (await listing(stack, dan))["fired"] == []
        await asyncio.to_thread(daemon.start)

        async def delivered() -> list[dict]:
            return f.alerts()

        (got,) = await until(delivered, 15, "alert fired after the restart")
        # A second restart replays the same history: nothing fires twice.
        assert await asyncio.to_thread(daemon.terminate) == 0
        await asyncio.to_thread(daemon.start)
        await ticks(stack, "RST", "30.00")
        await asyncio.sleep(1.0)

    # Assert: fired once, at the price that crossed (not the latest one).
    assert (got["id"], got["fired_price"], got["fired_seq"]) == (alert["id"], "34.90", 3)
    assert len(f.alerts()) == 1
    assert [a["id"] for a in fired_in_redis(stack, "dan@example.com")] == [alert["id"]]


async def test_two_alerts_daemons_fire_each_alert_once(stack: Stack, tmp_path: Path) -> None:
    # Arrange: a second alerts daemon on the same servers, with its own state dir.
    other_settings = Settings(**{**stack.settings.model_dump(), "home": tmp_path / "other"})
    other_settings.ensure_dirs()
    first = stack.daemons["alerts"]

    def fired_counts() -> list[int]:
        return [json.loads(d.status_path.read_text())["counters"].get("fired", 0) for d in (first, other)]

    other = Daemon("alerts", other_settings).start()
    before = sum(fired_counts())
    try:
        await ticks(stack, "TWO", "10.00")
        fay = await register(stack, "fay@example.com")
        made = [await add(stack, fay, "TWO", "above", p) for p in ("10.50", "11", "11.50")]

        async with feed(stack, fay) as f:
            # Act
            await ticks(stack, "TWO", "12.00")

            async def all_three() -> bool:
                return len(f.alerts()) >= 3

            await until(all_three, 10, "three alerts delivered")

            async def counted() -> bool:
                return sum(fired_counts()) - before >= 3

            await until(counted, 10, "status files count the fired alerts")
            await asyncio.sleep(1.5)  # a late duplicate would show up in a counter or on the socket
        fired_by_daemon = fired_counts()
        quotes = [json.loads(d.status_path.read_text())["counters"].get("quotes", 0) for d in (first, other)]
    finally:
        other.terminate()

    # Assert: each alert delivered and recorded once, though both daemons evaluated the tick.
    assert sorted(a["id"] for a in f.alerts()) == sorted(m["id"] for m in made)
    assert len(fired_in_redis(stack, "fay@example.com")) == 3
    assert sum(fired_by_daemon) - before == 3
    assert all(q > 0 for q in quotes)  # both daemons saw the tick


# --- CLI ----------------------------------------------------------------------------------------


class Cli:
    """``stockctl`` as a subprocess against the stack's state dir, with its own config dir."""

    def __init__(self, s: Stack, config: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")},
            "STOCKCTL_HOME": str(s.settings.home),
            "XDG_CONFIG_HOME": str(config),
            "COLUMNS": "200",
        }

    def run(self, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stockctl", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            input=input,
            cwd=REPO,
        )

    def json(self, *args: str) -> Any:
        proc = self.run(*args, "--json")
        assert proc.returncode == 0, f"{args} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout)


async def test_cli_alert_add_list_rm_watch_and_bad_input(stack: Stack, tmp_path: Path) -> None:
    await ticks(stack, "CLI", "70.00")
    cli = Cli(stack, tmp_path / "config")
    assert cli.run("register", "gus@example.com", "--password-stdin", input=PASSWORD + "\n").returncode == 0

    # add / list / rm with --json
    added = await asyncio.to_thread(cli.json, "alert", "add", "cli", "above", "75")
    alert = added["alert"]
    assert (alert["symbol"], alert["threshold"], added["last_price"]) == ("CLI", "75.00", "70.00")
    cross = (await asyncio.to_thread(cli.json, "alert", "add", "CLI", "cross-sma", "--side", "buy"))["alert"]
    assert cross["side"] == "buy" and cross["threshold"] is None
    listed = await asyncio.to_thread(cli.json, "alert", "list")
    assert [a["id"] for a in listed] == [alert["id"], cross["id"]]
    removed = await asyncio.to_thread(cli.json, "alert", "rm", str(cross["id"]))
    assert removed["id"] == cross["id"]
    table = await asyncio.to_thread(cli.run, "alert", "list")
    assert table.returncode == 0 and "above 75.00" in table.stdout and "cross-sma" not in table.stdout

    # bad input: one line on stderr, a non-zero exit, nothing stored
    typo = await asyncio.to_thread(cli.run, "alert", "add", "CLI", "above", "75.123456789")
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr.strip().splitlines() == [
        "error: bad price: too many decimals in '75.123456789' (at most 8); e.g. 200.5"
    ]
    unknown = await asyncio.to_thread(cli.run, "alert", "add", "NOPE", "below", "1")
    assert unknown.returncode == 1 and "unknown symbol NOPE; known symbols:" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    gone = await asyncio.to_thread(cli.run, "alert", "rm", str(cross["id"]))
    assert gone.returncode == 1 and f"no alert {cross['id']}" in gone.stderr
    bad_side = await asyncio.to_thread(cli.run, "alert", "add", "CLI", "cross-sma", "--side", "hold")
    assert bad_side.returncode == 2 and bad_side.stderr.strip().splitlines() == [
        "error: bad side 'hold'; side is buy or sell (or leave it out for either)"
    ]

    # watch: the alert firing arrives as one JSON line; list --all shows it fired
    gateway_status = stack.daemons["gateway"].status_path
    watch = subprocess.Popen(
        [sys.executable, "-m", "stockctl", "alert", "watch", "--count", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
        cwd=REPO,
    )
    try:

        async def connected() -> bool:
            return json.loads(gateway_status.read_text())["info"].get("clients", 0) >= 1

        await until(connected, 20, "alert watch connected")
        await asyncio.sleep(0.5)  # its subscribe follows the connection at once
        await ticks(stack, "CLI", "76.00")
        out, err = await asyncio.to_thread(watch.communicate, timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err
    (line,) = out.strip().splitlines()
    assert json.loads(line)["id"] == alert["id"] and json.loads(line)["fired_price"] == "76.00"
    everything = await asyncio.to_thread(cli.json, "alert", "list", "--all")
    assert everything["active"] == [] and [a["id"] for a in everything["fired"]] == [alert["id"]]


# --- TUI ----------------------------------------------------------------------------------------


def toasts(app: StockApp) -> list[tuple[str, str, str]]:
    """(title, message, severity) of the notifications on screen."""
    return [(n.title, n.message, n.severity) for n in app._notifications]


@pytest.fixture
def tui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in ("STOCKCTL_GATEWAY_URL", "STOCKCTL_WS_URL", "STOCKCTL_AUTH_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


async def test_tui_alert_key_adds_an_alert_and_a_fired_one_is_notified(stack: Stack, tui_env: None) -> None:
    # Arrange: TUI at 100.00 and a logged-in terminal showing it.
    await ticks(stack, "TUI", "100.00")
    tok = await register(stack, "tui@example.com")
    app = make_app(stack.settings, token=tok)

    async with app.run_test(size=(160, 48)) as pilot:
        await until_app(pilot, lambda: app.connection == "live" and "TUI" in app.panel(TickerBoard).quotes, 20, "live")
        app.select_symbol("TUI")

        # Act: `a` opens the form, prefilled with the last price; change it and press enter.
        await pilot.press("a")
        await until_app(pilot, lambda: isinstance(app.screen, AlertScreen), 5, "alert form")
        form = app.screen
        price = form.query_one("#alert-price", Input)
        assert "TUI · last 100.00" in str(form.query_one("#alert-title", Static).render())
        assert price.value == "100.00"
        price.value = "101.25"
        await pilot.pause()
        assert "alert when TUI above 101.25" in str(form.query_one("#alert-status", Label).render())
        await pilot.press("enter")
        await until_app(pilot, lambda: not isinstance(app.screen, AlertScreen), 5, "form closed")
        await until_app(pilot, lambda: any("set: TUI above 101.25" in m for _, m, _ in toasts(app)), 10, "added")
        (alert,) = (await listing(stack, tok))["active"]
        assert (alert["symbol"], alert["condition"], alert["threshold"]) == ("TUI", "above", "101.25")

        # A crossing: the fired alert pops up as a notification.
        await ticks(stack, "TUI", "101.10", "101.30")
        title = f"Alert {alert['id']} fired"
        await until_app(pilot, lambda: any(t == title for t, _, _ in toasts(app)), 15, "fired notification")

    (fired_toast,) = [(m, sev) for t, m, sev in toasts(app) if t == title]
    assert fired_toast == ("TUI above 101.25: now 101.30", "warning")


async def test_frozen_alert_form_validates_as_you_type_and_does_cross_sma(tmp_path: Path) -> None:
    data = demo_data()
    app = make_app(Settings(home=tmp_path / "home"), data=data)

    async with app.run_test(size=(80, 24)) as pilot:
        await until_app(pilot, lambda: app.selected == "AAPL", 5, "AAPL selected")
        last = app.panel(TickerBoard).quotes["AAPL"].price

        # A bad price: the reason shows and enter does nothing.
        await pilot.press("a")
        await until_app(pilot, lambda: isinstance(app.screen, AlertScreen), 5, "alert form")
        form = app.screen
        assert form.query_one("#alert-price", Input).value == last
        form.query_one("#alert-price", Input).value = "1.123456789"
        await pilot.press("enter")
        status = form.query_one("#alert-status", Label)
        assert "too many decimals" in str(status.render()) and status.has_class("error")
        assert app.screen is form and data.alerts == []

        # cross-sma hides the price and asks for a side; ctrl+s adds it.
        form.query_one("#alert-condition", Select).value = "cross-sma"
        form.query_one("#alert-side", Select).value = "sell"
        await pilot.pause()
        assert form.has_class("cross") and not form.query_one("#alert-price", Input).display
        await pilot.press("ctrl+s")
        await until_app(pilot, lambda: bool(data.alerts), 5, "alert added")
        await until_app(pilot, lambda: any("alert 1 set: AAPL cross-sma sell" in m for _, m, _ in toasts(app)), 5)

        # escape closes the form without adding anything
        await pilot.press("a")
        await until_app(pilot, lambda: isinstance(app.screen, AlertScreen), 5, "alert form again")
        await pilot.press("escape")
        await until_app(pilot, lambda: not isinstance(app.screen, AlertScreen), 5, "form closed")
        assert "Alert" in {c.title for c in app.get_system_commands(app.screen)}  # in the command palette

    assert [(a.symbol, a.condition, a.side, a.threshold) for a in data.alerts] == [("AAPL", "cross-sma", "sell", None)]
