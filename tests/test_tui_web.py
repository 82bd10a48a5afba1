"""``stockctl tui --web`` in headless Chromium: the board renders in the browser, live.

A real stack and a login stored by ``stockctl login``, then ``stockctl tui --web`` (textual-serve)
and Chromium driven over the DevTools protocol. textual-serve draws with xterm.js on a canvas,
so there is no text in the DOM: a conditional breakpoint that never pauses keeps a reference to
the page's xterm.js terminal (``window.__term``), and the test reads the terminal's screen
buffer: the text a person sees.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import websockets

from stockctl import infra
from stockctl.client import write_instance
from stockctl.settings import Settings
from tests.conftest import REPO, make_settings, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
EMAIL = "web@example.com"
PASSWORD = "correct horse battery staple"
AAPL_ROW = re.compile(r"AAPL\s+\d+\.\d+")

SCREEN_JS = """(() => {
  const t = window.__term;
  if (!t) return null;
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) {
    const line = b.getLine(b.viewportY + i);
    rows.push(line ? line.translateToString(true) : "");
  }
  return JSON.stringify({cols: t.cols, rows: t.rows, text: rows.join("\\n")});
})()"""


@dataclass
class LoggedIn:
    settings: Settings
    env: dict[str, str]


@dataclass
class Running:
    """A process of the test, where it answers, and (once stopped) whether it went by itself."""

    proc: subprocess.Popen
    address: str
    stopped_cleanly: bool | None = None


@pytest.fixture
def logged_in(clean, tmp_path: Path, daemons) -> LoggedIn:
    """A running stack and a user logged in exactly as ``stockctl login`` leaves it."""
    settings = make_settings(
        clean,
        tmp_path / "home",
        rate=5,
        seed=11,
        gateway_port=infra.free_port(),
        ws_port=infra.free_port(),
        auth_port=infra.free_port(),
    )
    write_instance(settings)
    for name in ("processor", "publisher", "auth", "gateway"):
        daemons(name, settings)
    resp = httpx.post(f"{settings.gateway_url}/auth/register", json={"email": EMAIL, "password": PASSWORD}, timeout=10)
    assert resp.status_code == 201, resp.text
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_") and k not in ("COLUMNS", "LINES")}
    env.update(STOCKCTL_HOME=str(settings.home), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")
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
    return LoggedIn(settings, env)


# --- processes ------------------------------------------------------------------------------


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen, sig: int, grace: float) -> bool:
    """Signal the process (its own session); SIGKILL its whole group if it lingers. Whether it
    went by itself, children included."""
    if proc.poll() is None:
        proc.send_signal(sig)
    clean = True
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        clean = False
    deadline = time.monotonic() + grace
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive(proc.pid):
        clean = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    wait_for(lambda: not group_alive(proc.pid), 5, what=f"process group {proc.pid} gone")
    return clean


@contextlib.contextmanager
def web_server(env: dict[str, str], port: int, log: Path) -> Iterator[Running]:
    """``stockctl tui --web --port PORT``, until the end of the block."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stockctl", "tui", "--web", "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    running = Running(proc, f"http://127.0.0.1:{port}")
    try:
        url = running.address

        def answers() -> bool:
            assert proc.poll() is None, f"stockctl tui --web exited:\n{log.read_text()}"
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 20, 0.1, "the web server to answer")
        assert f"serving on {url}" in log.read_text()
        yield running
    finally:
        # Ctrl+C, as the server's banner says; the app sessions it started must go with it.
        running.stopped_cleanly = stop_group(proc, signal.SIGINT, 10)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Running]:
    """Headless Chromium with DevTools on a port it picks; yields the browser's DevTools address."""
    assert Path(CHROMIUM).exists() or shutil.which("chromium"), "chromium is not installed (.ci/run installs it)"
    argv = [
        CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium")),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: no web fonts, no calls home
        "--window-size=1400,900",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    log = profile.with_suffix(".log")
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL, start_new_session=True)
    running = Running(proc, "")
    try:
        port_file = profile / "DevToolsActivePort"

        def port() -> str:
            assert proc.poll() is None, f"chromium exited with {proc.returncode}:\n{log.read_text()[-2000:]}"
            text = port_file.read_text() if port_file.exists() else ""
            return text.split("\n")[0] if "\n" in text else ""

        running.address = f"127.0.0.1:{wait_for(port, 20, 0.1, 'chromium DevTools port')}"
        yield running
    finally:
        running.stopped_cleanly = stop_group(proc, signal.SIGTERM, 5)


class DevTools:
    """A minimal DevTools protocol client of one page."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 15))
            if msg.get("id") == msg_id:
                assert "error" not in msg, f"{method}: {msg['error']}"
                return msg.get("result", {})
            self.events.append(msg)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")


def page_ws_url(devtools: str) -> str:
    pages = httpx.get(f"http://{devtools}/json/list", timeout=5).json()
    page = next(p for p in pages if p.get("type") == "page")
    return page["webSocketDebuggerUrl"]


def write_call(script: str) -> tuple[int, int]:
    """Line and column (0-based) in textual-serve's bundle where bytes are written to xterm.js."""
    idx = script.find("this.terminal.write(")
    assert idx >= 0, "textual-serve's textual.js no longer calls this.terminal.write(: update this test"
    line = script.count("\n", 0, idx)
    return line, idx - (script.rfind("\n", 0, idx) + 1)


# --- the test -------------------------------------------------------------------------------


async def test_tui_web_in_headless_chromium_renders_the_live_board(logged_in: LoggedIn, tmp_path: Path) -> None:
    port = infra.free_port()
    with (
        web_server(logged_in.env, port, tmp_path / "web.log") as server,
        chromium(tmp_path / "chromium") as browser,
    ):
        url = server.address
        page = await asyncio.to_thread(page_ws_url, browser.address)
        html = httpx.get(url, timeout=5).text
        assert ">stockctl<" in html  # textual-serve's page names the app
        script_url = urljoin(url + "/", next(m for m in re.findall(r'src="([^"]+)"', html) if m.endswith("textual.js")))
        line, column = write_call(httpx.get(script_url, timeout=5).text)

        # Loopback: no proxy from the environment (websockets >= 15 honours the proxy variables).
        no_proxy = {"proxy": None} if int(websockets.__version__.split(".")[0]) >= 15 else {}
        async with websockets.connect(page, max_size=64 * 1024 * 1024, **no_proxy) as ws:
            cdp = DevTools(ws)
            await cdp.call("Page.enable")
            await cdp.call("Runtime.enable")
            await cdp.call("Debugger.enable")
            # Never pauses (the condition is false), but keeps the terminal where the page can reach it.
            await cdp.call(
                "Debugger.setBreakpointByUrl",
                url=script_url,
                lineNumber=line,
                columnNumber=column,
                condition="(window.__term = this.terminal, false)",
            )
            await cdp.call("Page.navigate", url=url)

            screen: dict[str, Any] = {}
            deadline = time.monotonic() + 40
            while True:
                screen = json.loads(await cdp.evaluate(SCREEN_JS) or "{}")
                text = screen.get("text", "")
                if AAPL_ROW.search(text) and "MSFT" in text and "live" in text:
                    break
                if time.monotonic() > deadline:
                    shot = await cdp.call("Page.captureScreenshot", format="png")
                    (tmp_path / "failed.png").write_bytes(base64.b64decode(shot["data"]))
                    body = await cdp.evaluate("document.body.className")
                    raise AssertionError(
                        f"no live board in the browser after 40s (body class {body!r}, screenshot "
                        f"{tmp_path / 'failed.png'}); terminal:\n{text}\nserver log:\n"
                        f"{(tmp_path / 'web.log').read_text()[-3000:]}"
                    )
                await asyncio.sleep(0.25)

            # The board, as the stored login's user, sized to the browser window (wide layout: all panels).
            assert EMAIL in text, text
            assert "Tickers" in text and "AAPL ·" in text, text  # the board and the chart of AAPL
            assert screen["cols"] >= 120, screen["cols"]
            first = AAPL_ROW.search(text).group(0)  # type: ignore[union-attr]

            # It is live: the price on the page moves.
            async def moved() -> bool:
                now = json.loads(await cdp.evaluate(SCREEN_JS))["text"]
                found = AAPL_ROW.search(now)
                return bool(found) and found.group(0) != first

            deadline = time.monotonic() + 15
            while not await moved():
                assert time.monotonic() < deadline, "the AAPL price on the page did not change in 15s"
                await asyncio.sleep(0.25)

            # The page itself: textual-serve's terminal connected and drew (not the "Session ended" dialog).
            body = await cdp.evaluate("document.body.className")
            assert "-first-byte" in body and "-closed" not in body, body
            shot = await cdp.call("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a drawn page, not a blank one
            (tmp_path / "board.png").write_bytes(png)

    # Closing the browser ends the session; Ctrl+C stops the server: nothing is left running.
    assert browser.stopped_cleanly, "chromium did not exit on SIGTERM"
    assert server.stopped_cleanly, "stockctl tui --web (or an app it started) outlived Ctrl+C"
