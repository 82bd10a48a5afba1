"""``stockctl tui`` in a real terminal: tmux sends keys and reads the screen, as a person would.

A real stack (processor, publisher, auth, gateway), a login stored by ``stockctl login``,
then ``stockctl tui`` in a detached 100x30 tmux session on a private tmux server.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stockctl.instance import infra
from stockctl.instance.registry import write_instance
from stockctl.settings import Settings
from tests.support.stack import REPO, make_settings, wait_for

pytestmark = pytest.mark.integration

EMAIL = "tmux@example.com"
PASSWORD = "correct horse battery staple"
PRICE = re.compile(r"AAPL\s*│?\s*(\d+\.\d+)")


@dataclass
class LoggedIn:
    settings: Settings
    env: dict[str, str]
    """Environment of the CLI: this instance's state dir and a private config dir (the login)."""


def cli_env(settings: Settings, config: Path) -> dict[str, str]:
    # No COLUMNS/LINES: they would override the size of the tmux pane.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_") and k not in ("COLUMNS", "LINES")}
    env.update(STOCKCTL_HOME=str(settings.home), XDG_CONFIG_HOME=str(config), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def logged_in(clean, tmp_path: Path, daemons) -> LoggedIn:
    """A running stack and a user logged in exactly as ``stockctl login`` leaves it."""
    settings = make_settings(
        clean,
        tmp_path / "home",
        rate=5,
        seed=7,
        gateway_port=infra.free_port(),
        ws_port=infra.free_port(),
        auth_port=infra.free_port(),
    )
    write_instance(settings)
    for name in ("processor", "publisher", "auth", "gateway"):
        daemons(name, settings)
    resp = httpx.post(f"{settings.gateway_url}/auth/register", json={"email": EMAIL, "password": PASSWORD}, timeout=10)
    assert resp.status_code == 201, resp.text
    env = cli_env(settings, tmp_path / "config")
    login = subprocess.run(
        [sys.executable, "-m", "stockctl", "login", EMAIL, "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=30,
    )
    assert login.returncode == 0, login.stderr
    assert f"logged in as {EMAIL}" in login.stdout
    return LoggedIn(settings, env)


class Tmux:
    """One detached session on a tmux server of its own (``-L``): nothing else shares it."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        assert shutil.which("tmux"), "tmux is not installed (.ci/run installs it)"
        self.socket = f"stockctl-test-{uuid.uuid4().hex[:10]}"
        self.session = "tui"
        self.tmp_path = tmp_path
        self.env = env
        """The server's environment, so the pane's: passed explicitly, because the C environment of
        this process may hold more than os.environ (readline sets COLUMNS and LINES)."""
        self.socket_path = ""

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", os.devnull, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=10,
            env=self.env,
        )

    def start(self, command: str, width: int, height: int) -> None:
        # The pane runs a script: the app, then its exit status on the screen (the pane stays).
        script = self.tmp_path / "run-tui.sh"
        script.write_text(f'cd {shlex.quote(str(REPO))}\n{command}\necho "TUI EXITED rc=$?"\nexec sleep 120\n')
        self.tmux("new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), f"sh {script}")
        self.socket_path = self.tmux("display-message", "-p", "-t", self.session, "#{socket_path}").stdout.strip()

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session).stdout

    def keys(self, *keys: str) -> None:
        """Key names as tmux knows them (``Down``, ``C-p``, ``Escape``, ``q``)."""
        self.tmux("send-keys", "-t", self.session, *keys)

    def type(self, text: str) -> None:
        """Literal text, typed."""
        self.tmux("send-keys", "-l", "-t", self.session, text)

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.session, check=False).returncode == 0

    def kill(self) -> None:
        self.tmux("kill-server", check=False)
        if self.socket_path:  # tmux leaves the socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


def wait_screen(term: Tmux, predicate, what: str, timeout: float = 20.0) -> str:
    """Poll the pane until ``predicate(screen)``; the failure shows the last screen."""
    seen = {"screen": ""}

    def check() -> bool:
        seen["screen"] = term.screen()
        return bool(predicate(seen["screen"]))

    try:
        wait_for(check, timeout, 0.2, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last screen:\n{seen['screen']}") from None
    return seen["screen"]


def aapl_price(screen: str) -> str | None:
    m = PRICE.search(screen)
    return m.group(1) if m else None


def test_tui_in_tmux_live_board_keys_palette_and_quit(logged_in: LoggedIn, tmp_path: Path) -> None:
    term = Tmux(tmp_path, logged_in.env)
    try:
        term.start(f"{shlex.quote(sys.executable)} -m stockctl tui", 100, 30)

        # The board: both symbols with a price, live, as the stored login's user.
        screen = wait_screen(term, lambda s: aapl_price(s) and "MSFT" in s and "live" in s, "live board with AAPL")
        assert "Tickers" in screen
        assert EMAIL in screen, screen
        first = aapl_price(screen)
        # Live: the price on screen moves without a key pressed.
        wait_screen(term, lambda s: aapl_price(s) not in (None, first), "AAPL price to change on screen")

        # 100 columns is the narrow layout: the board and the chart of the first symbol.
        screen = wait_screen(term, lambda s: "AAPL · ticks" in s, "AAPL chart")
        assert "MSFT · ticks" not in screen
        # Down arrow on the board selects MSFT: the chart follows.
        term.keys("Down")
        screen = wait_screen(term, lambda s: "MSFT · ticks" in s, "MSFT chart after Down")
        assert "AAPL · ticks" not in screen

        # `2` swaps the chart for the signals log; `v` goes on to the next panel (the book).
        term.keys("2")
        screen = wait_screen(term, lambda s: "Signals" in s and "MSFT · ticks" not in s, "signals panel")
        assert "side" in screen and "price" in screen
        term.keys("v")
        wait_screen(term, lambda s: "Book  Order  Orders" in s and "Signals" not in s, "book tabs after v")

        # The command palette lists the app's commands; typing narrows it; Escape closes it.
        term.keys("C-p")
        wait_screen(term, lambda s: "Search for commands" in s, "command palette")
        term.type("Theme")
        screen = wait_screen(term, lambda s: "Switch between the light and the dark theme" in s, "Theme command")
        term.keys("Escape")
        # (wait until it is gone: an Escape and a key sent together read as Alt+key)
        wait_screen(term, lambda s: "🔎" not in s and "Switch between" not in s and "Tickers" in s, "palette gone")

        # `/` opens the filter box (type once you see it, as a person does: keys sent in the same
        # instant as the `/` still reach the board); the board narrows as you type; Escape clears it.
        term.keys("/")
        wait_screen(term, lambda s: "filter symbols" in s, "filter box")
        term.type("ms")
        screen = wait_screen(term, lambda s: "filter: ms" in s and aapl_price(s) is None, "board filtered to MSFT")
        assert re.search(r"MSFT\s+\d+\.\d+", screen), screen
        term.keys("Escape")
        wait_screen(term, lambda s: "filter:" not in s and aapl_price(s), "filter cleared")

        # `q` quits: the terminal is handed back, the app exits with 0 and leaves no traceback.
        term.keys("q")
        screen = wait_screen(term, lambda s: "TUI EXITED" in s, "the app to exit", timeout=15)
        assert "TUI EXITED rc=0" in screen, screen
        assert "Traceback" not in screen and "Tickers" not in screen, screen
        assert term.alive()  # the pane is the shell's now (it sleeps)
    finally:
        term.kill()
    assert not term.alive()
