"""A terminal for tests: ``tmux`` sends keys and reads the screen, as a person would.

:class:`Tmux` is one detached session on a tmux server of its own; :func:`wait_screen` polls
its pane until a predicate holds (a failure shows the last screen).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.support.stack import REPO, wait_for

PRICE = re.compile(r"AAPL\s*│?\s*(\d+\.\d+)")


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


def wait_screen(term: Tmux, predicate: Callable[[str], object], what: str, timeout: float = 20.0) -> str:
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
    """The price of AAPL on the ticker board of ``screen``, if it shows one."""
    m = PRICE.search(screen)
    return m.group(1) if m else None
