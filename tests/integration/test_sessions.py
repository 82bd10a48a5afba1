"""Sessions renew themselves: long-lived clients outlive their 10 s access tokens.

Every test runs the real daemons with ``STOCKCTL_ACCESS_TOKEN_TTL_S=10`` for at least four
token lifetimes (>= 40 s). The clients (``watch``, ``alert watch``, ``book --watch``, the TUI
and :func:`stockctl.sdk.stream.stream`) must renew on the open socket, share one credentials
file without tripping the server's refresh-token reuse detection, and come back once with
a fresh token after a 4401 close.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from stockctl.client.credentials import LiveSession, NotLoggedIn, Session, credentials_path, load, save
from stockctl.instance.registry import write_instance
from stockctl.sdk.stream import live_frames, stream
from stockctl.settings import Settings
from tests.support.cli import Cli
from tests.support.pilot import until
from tests.support.stack import REPO, stack_settings, wait_for
from tests.support.terminal import Tmux, aapl_price, wait_screen
from tui.app import make_app
from tui.screens.login import LoginScreen
from tui.widgets.ticker_board import TickerBoard

pytestmark = pytest.mark.integration

TTL_S = 10
LIFETIMES = 4.5
RUN_S = TTL_S * LIFETIMES  # 45 s: four lifetimes and a half
MAX_GAP_S = 3.0
CYCLE_S = TTL_S * 2 / 3 - 1
"""How often one login rotates: a token is due with a third of its life left, counted from 1 s
before it was asked for (the server's whole second)."""
EMAIL = "renew@example.com"
LATE_BID = "1.05"  # below every level the liquidity daemon quotes (around 950), so within the ladder's depth
PASSWORD = "correct horse battery staple"


def counters(settings_or_home: Settings | Path, daemon: str) -> dict[str, int]:
    """The counters a daemon writes to ``run/<daemon>.json`` every second."""
    run_dir = settings_or_home.run_dir if isinstance(settings_or_home, Settings) else settings_or_home / "run"
    return json.loads((run_dir / f"{daemon}.json").read_text()).get("counters", {})


def max_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch in [start, end] without an event at one of ``times``."""
    points = [start, *[t for t in times if start <= t <= end], end]
    return max(b - a for a, b in itertools.pairwise(points))


# --- the CLI: several processes on one credentials file ------------------------------------------


@dataclass
class Lines:
    """A child process whose stdout lines are timestamped as they arrive."""

    proc: subprocess.Popen
    lines: list[tuple[float, str]] = field(default_factory=list)

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str]) -> Lines:
        proc = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        out = cls(proc)
        threading.Thread(target=out._read, daemon=True).start()
        return out

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))

    def stop(self) -> tuple[int, str]:
        """SIGINT, as Ctrl-C: the exit status and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A whole instance (``stockctl up``) whose access tokens live 10 s, and a stored login."""
    c = Cli(tmp_path / "home")
    c.env["STOCKCTL_ACCESS_TOKEN_TTL_S"] = str(TTL_S)
    c.env["STOCKCTL_RATE"] = "5"
    c.env.pop("COLUMNS")  # the TUI takes the size of its tmux pane
    c.env.pop("LINES", None)
    yield c
    c.run("down", timeout=120)


@pytest.mark.timeout(300)
def test_two_watches_alert_watch_book_watch_and_the_tui_share_one_login_past_four_lifetimes(
    cli: Cli, tmp_path: Path
) -> None:
    # Arrange: an instance, a login stored by `stockctl register`, then every long-lived client.
    cli.run("up", check=True)
    cli.run("register", EMAIL, "--password-stdin", input=PASSWORD + "\n", check=True)
    home = cli.home
    wait_for(lambda: {r["symbol"] for r in cli.json("prices")} >= {"AAPL", "MSFT"}, 30, what="quotes")
    exe = [sys.executable, "-m", "stockctl"]
    watches = [Lines.start([*exe, "watch", "AAPL", "MSFT", "--json"], cli.env) for _ in range(2)]
    alerts = Lines.start([*exe, "alert", "watch", "--json"], cli.env)
    book = Lines.start([*exe, "book", "TATA_INR", "--watch"], cli.env)
    term = Tmux(tmp_path, {**cli.env, "TERM": "xterm-256color"})
    clients = [*watches, alerts, book]
    try:
        term.start(f"{shlex.quote(sys.executable)} -m stockctl tui", 100, 30)
        wait_screen(term, lambda s: aapl_price(s) and "live" in s, "TUI live board", timeout=40)
        wait_for(lambda: all(w.lines for w in watches), 30, what="first quote of each watch")
        start = time.monotonic()
        refreshes_before = counters(home, "auth").get("refreshes", 0)

        # Act: four and a half token lifetimes, looking at the TUI's screen every second.
        screens_off_board: list[str] = []
        while time.monotonic() - start < RUN_S:
            screen = term.screen()
            if "log in to this instance" in screen or "not logged in" in screen or "Tickers" not in screen:
                screens_off_board.append(screen)
            time.sleep(1.0)
        end = time.monotonic()

        # An alert set now, after four lifetimes, still reaches the `alert watch` started before.
        cli.run("alert", "add", "AAPL", "above", "1", check=True)  # already there: fires on the next tick
        wait_for(lambda: alerts.lines, 20, what="the fired alert on `alert watch`")
        screen = wait_screen(term, lambda s: aapl_price(s) and "live" in s, "TUI still live")
        first = aapl_price(screen)
        wait_screen(term, lambda s: aapl_price(s) not in (None, first), "AAPL moving on the TUI after 45 s")
        # A bid at a price nobody else quotes, placed now, reaches `book --watch` started before.
        cli.run("order", "buy", "TATA_INR", f"1@{LATE_BID}", check=True)
        wait_for(lambda: any(p == LATE_BID for p, *_ in cli.json("book", "TATA_INR")["bids"]), 20, what="the bid")
        time.sleep(2)  # the ladder redraws 8 times a second; its last drawing is printed when it stops
        alive = [c.proc.poll() is None for c in clients]
    finally:
        term.kill()
        stopped = [c.stop() for c in clients]

    # Assert: nobody was logged out; each watch got a quote at least every 3 s, all along.
    assert alive == [True] * len(clients), stopped
    for rc, err in stopped:
        assert rc == 0 and "not logged in" not in err and "Traceback" not in err, err
    for w in watches:
        times = [t for t, line in w.lines if json.loads(line)["type"] == "quote"]
        assert max_gap(times, start, end) <= MAX_GAP_S, f"a {max_gap(times, start, end):.1f} s gap in quotes"
    assert json.loads(alerts.lines[0][1])["symbol"] == "AAPL"
    # `book --watch` kept its channel: its last ladder (printed at Ctrl-C) has the late bid.
    wait_for(lambda: LATE_BID in "".join(line for _, line in book.lines), 10, what="the late bid in `book --watch`")
    assert not screens_off_board, screens_off_board[0]
    # The renewals rotated the refresh token, and no process spent one another had spent.
    auth = counters(home, "auth")
    assert auth.get("reuse_detected", 0) == 0
    rotations = auth.get("refreshes", 0) - refreshes_before
    gaps = [max_gap([t for t, line in w.lines if json.loads(line)["type"] == "quote"], start, end) for w in watches]
    print(f"\n{rotations} refreshes in {end - start:.0f} s for 5 clients; longest quote gaps {gaps}")
    assert rotations >= LIFETIMES - 1, rotations
    # Shared: about one rotation per cycle for all five (unshared, each would rotate its own).
    assert rotations <= 2 * RUN_S / CYCLE_S, f"{rotations} refreshes: the processes do not share rotations"
    assert "spent refresh token presented again" not in (home / "logs" / "auth.log").read_text()
    # And the login still works: the stored refresh token is the live one.
    assert cli.json("whoami")["email"] == EMAIL
    session = json.loads(next((home.parent / "config" / "stockctl" / "credentials").glob("*.json")).read_text())
    gateway = json.loads((home / "run" / "instance.json").read_text())["gateway_url"]
    resp = httpx.post(f"{gateway}/auth/refresh", json={"refresh_token": session["refresh_token"]}, timeout=10)
    assert resp.status_code == 200, resp.text


# --- in-process clients: the TUI under Pilot, stockctl.client streams ----------------------------


@dataclass
class Stack:
    settings: Settings


@pytest.fixture
def stack(clean, tmp_path: Path, daemons, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """processor, publisher (5 ticks/s), auth and gateway with 10 s tokens; a stored login."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("STOCKCTL_GATEWAY_URL", "STOCKCTL_WS_URL", "STOCKCTL_AUTH_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = stack_settings(clean, tmp_path / "home", rate=5, seed=11, access_token_ttl_s=TTL_S)
    write_instance(settings)
    for name in ("processor", "publisher", "auth", "gateway"):
        daemons(name, settings)
    asked = time.time()
    resp = httpx.post(f"{settings.gateway_url}/auth/register", json={"email": EMAIL, "password": PASSWORD}, timeout=10)
    assert resp.status_code == 201, resp.text
    save(settings, Session.from_tokens(settings.gateway_url, resp.json(), asked))
    return Stack(settings)


@pytest.mark.timeout(180)
async def test_the_tui_and_a_client_stream_stay_live_past_four_lifetimes(stack: Stack) -> None:
    # One run of four lifetimes, two clients of one login in one process: the TUI under Pilot
    # stays on its board, and a stockctl.client stream keeps its subscriptions.
    channels = ["quotes:AAPL", "quotes:MSFT"]
    before = load(stack.settings)

    async def follow() -> dict[str, list[float]]:
        seen: dict[str, list[float]] = {c: [] for c in channels}
        start = time.monotonic()
        async for kind, channel, _data in stream(stack.settings, channels):
            if kind == "quote":
                seen[channel].append(time.monotonic() - start)
            if time.monotonic() - start > RUN_S:
                return seen
        raise AssertionError("the stream ended")

    app = make_app(stack.settings)  # the stored login, as `stockctl tui` runs
    async with app.run_test(size=(120, 36)) as pilot:
        board = app.panel(TickerBoard)
        await until(pilot, lambda: app.connection == "live" and "AAPL" in board.quotes, 20, "live board")
        streamed = asyncio.create_task(follow())
        start, seen, changes = time.monotonic(), board.quotes["AAPL"].seq, []
        off_board = []
        while time.monotonic() - start < RUN_S:
            await pilot.pause(0.2)
            if isinstance(app.screen, LoginScreen) or app.connection != "live":
                off_board.append((round(time.monotonic() - start, 1), app.connection, app.sub_title))
            if board.quotes["AAPL"].seq != seen:
                seen = board.quotes["AAPL"].seq
                changes.append(time.monotonic())
        end = time.monotonic()
        by_channel = await asyncio.wait_for(streamed, 20)

        assert not off_board, off_board
        assert max_gap(changes, start, end) <= MAX_GAP_S
        assert "● live" in app.sub_title and EMAIL in app.sub_title
    for channel in channels:
        assert max_gap(by_channel[channel], 0.0, RUN_S) <= MAX_GAP_S, channel
        assert max(by_channel[channel]) > RUN_S - MAX_GAP_S, f"{channel} stopped"
    # One WebSocket connection each all along: tokens were renewed on them, never by reconnecting.
    assert counters(stack.settings, "gateway").get("connections") == 2
    auth = counters(stack.settings, "auth")
    assert auth.get("refreshes", 0) >= LIFETIMES - 1 and auth.get("reuse_detected", 0) == 0
    after = load(stack.settings)
    assert before is not None and after is not None and after.refresh_token != before.refresh_token


@contextlib.contextmanager
def holding_the_credentials_lock(settings: Settings) -> Iterator[None]:
    """The lock every renewal takes, held by this test: as a process stuck mid-renewal would."""
    path = credentials_path(settings).with_suffix(".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.mark.timeout(180)
def test_a_4401_close_is_followed_by_one_reconnect_with_a_fresh_token(stack: Stack) -> None:
    settings = stack.settings

    async def scenario() -> tuple[list[tuple[float, str, str]], list[tuple[float, str]], Exception | None]:
        states: list[tuple[float, str, str]] = []
        frames: list[tuple[float, str]] = []
        start = time.monotonic()

        async def follow() -> None:
            session = LiveSession(settings)
            on_state = lambda state, detail: states.append((time.monotonic() - start, state, detail))  # noqa: E731
            async for f in live_frames(settings, [["quotes:AAPL"]], session, on_state=on_state):
                frames.append((time.monotonic() - start, f.type))
                if time.monotonic() - start > RUN_S:
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(1.0)
        # No renewal can happen for 1.5 lifetimes: the token expires on the socket, the gateway
        # closes it with 4401, and the client must wait for a fresh token, then come back once.
        held = asyncio.Event()
        release = asyncio.Event()

        def hold() -> None:
            with holding_the_credentials_lock(settings):
                loop.call_soon_threadsafe(held.set)
                while not release.is_set():
                    time.sleep(0.05)

        loop = asyncio.get_running_loop()
        holder = asyncio.create_task(asyncio.to_thread(hold))
        await held.wait()
        await asyncio.sleep(TTL_S * 1.5)
        release.set()
        await holder
        error: Exception | None = None
        try:
            await task
        except Exception as exc:  # the assertion below says which
            error = exc
        return states, frames, error

    states, frames, error = asyncio.run(scenario())

    assert error is None, repr(error)
    refused = [t for t, state, detail in states if "token refused; reconnecting with a fresh one" in detail]
    assert len(refused) == 1, states
    welcomes = [t for t, kind in frames if kind == "welcome"]
    snapshots = [t for t, kind in frames if kind == "snapshot"]
    # One connection before the 4401 and one after: each welcomed and subscribed once...
    assert len(snapshots) == 2 and snapshots[0] < refused[0] < snapshots[1], (snapshots, refused)
    assert sum(1 for t in welcomes if t < refused[0]) == 1
    assert counters(settings, "gateway").get("connections") == 2
    # ...and after it, with the fresh token, renewed in place again for the rest of the run.
    quotes_after = [t for t, kind in frames if kind == "quote" and t > snapshots[1]]
    assert max_gap(quotes_after, snapshots[1], RUN_S) <= MAX_GAP_S
    assert sum(1 for t in welcomes if t > snapshots[1]) >= 2  # a welcome per renewal
    assert counters(settings, "auth").get("reuse_detected", 0) == 0


def test_a_token_the_gateway_refuses_is_replaced_once_and_a_dead_login_says_not_logged_in(stack: Stack) -> None:
    """A token the client holds valid but the gateway refuses (4401): one fresh one, not a loop."""
    settings = stack.settings
    stored = load(settings)
    assert stored is not None
    forged = stored.access_token[:-8] + ("A" * 8 if not stored.access_token.endswith("A" * 8) else "B" * 8)
    save(settings, Session(stored.base_url, stored.email, forged, time.time() + 3600, stored.refresh_token, TTL_S))

    async def quotes(n: int) -> int:
        got = 0
        async for kind, _channel, _data in stream(settings, ["quotes:AAPL"]):
            got += kind == "quote"
            if got >= n:
                return got
        return got

    assert asyncio.run(asyncio.wait_for(quotes(3), 20)) == 3
    renewed = load(settings)
    assert renewed is not None and renewed.access_token != forged and renewed.refresh_token != stored.refresh_token
    wait_for(lambda: counters(settings, "gateway").get("connections") == 2, 5, what="refused, then one reconnect")

    # Nothing left to renew with: the next 4401 ends it with NotLoggedIn after one attempt.
    save(settings, Session(stored.base_url, stored.email, forged, time.time() + 3600, "spent-or-forged", TTL_S))
    with pytest.raises(NotLoggedIn):
        asyncio.run(asyncio.wait_for(quotes(1), 20))
    time.sleep(1.5)  # the gateway writes its counters every second
    assert counters(settings, "gateway").get("connections") == 3
    assert load(settings) is None  # the dead login is forgotten: `stockctl login` again
    assert counters(settings, "auth").get("reuse_detected", 0) == 0
