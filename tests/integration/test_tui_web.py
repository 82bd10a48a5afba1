"""``stockctl tui --web`` in headless Chromium: the board renders in the browser, live, and
only for whoever holds the URL the server printed.

A real stack and a login stored by ``stockctl login``, then ``stockctl tui --web`` (textual-serve)
and Chromium driven over the DevTools protocol. textual-serve draws with xterm.js on a canvas,
so there is no text in the DOM: a conditional breakpoint that never pauses keeps a reference to
the page's xterm.js terminal (``window.__term``), and the test reads the terminal's screen
buffer: the text a person sees.

The guard (secret, Origin, session cap) is probed over real HTTP and WebSocket connections; those
tests need no stack, since the app a session starts runs (disconnected) without one.
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
import socket
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

from stockctl.instance import infra
from tests.support.cli import LoggedIn, logged_in_stack
from tests.support.stack import REPO, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
# Loopback: no proxy from the environment (websockets >= 15 honours the proxy variables).
NO_PROXY: dict[str, Any] = {"proxy": None} if int(websockets.__version__.split(".")[0]) >= 15 else {}
EMAIL = "web@example.com"
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
class Running:
    """A process of the test, where it answers, and (once stopped) whether it went by itself.

    For the web server, ``url`` is the URL it printed (with its secret) and ``token`` the secret.
    """

    proc: subprocess.Popen
    address: str
    stopped_cleanly: bool | None = None
    url: str = ""
    token: str = ""


@pytest.fixture
def logged_in(clean, tmp_path: Path, daemons) -> LoggedIn:
    """A running stack and a user logged in exactly as ``stockctl login`` leaves it."""
    return logged_in_stack(clean, tmp_path, daemons, EMAIL, seed=11)


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


PRINTED_URL = re.compile(r"serving on (http://\S+/\?token=([A-Za-z0-9_-]{43})) ")


@contextlib.contextmanager
def web_server(env: dict[str, str], port: int, log: Path, *flags: str) -> Iterator[Running]:
    """``stockctl tui --web --port PORT [FLAGS]``, until the end of the block."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stockctl", "tui", "--web", "--port", str(port), *flags],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    running = Running(proc, f"http://127.0.0.1:{port}")
    try:

        def printed() -> re.Match[str] | None:
            assert proc.poll() is None, f"stockctl tui --web exited:\n{log.read_text()}"
            return PRINTED_URL.search(log.read_text())

        found = wait_for(printed, 20, 0.1, "the web server to print its URL with ?token=")
        running.url, running.token = found.group(1), found.group(2)  # type: ignore[union-attr]
        assert running.url == f"{running.address}/?token={running.token}"

        def answers() -> bool:
            assert proc.poll() is None, f"stockctl tui --web exited:\n{log.read_text()}"
            try:
                return httpx.get(running.url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 20, 0.1, "the web server to answer")
        yield running
    finally:
        # Ctrl+C, as the server's banner says; the app sessions it started must go with it.
        running.stopped_cleanly = stop_group(proc, signal.SIGINT, 10)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Running]:
    """Headless Chromium with DevTools on a port it picks; yields the browser's DevTools address."""
    assert Path(CHROMIUM).exists() or shutil.which("chromium"), (
        "chromium is not installed (scripts/install-test-deps installs it)"
    )
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


async def board(cdp: DevTools, tmp_path: Path, log: Path, name: str) -> dict[str, Any]:
    """The terminal's screen, once it shows the live board (a screenshot and the logs if not)."""
    deadline = time.monotonic() + 40
    while True:
        screen = json.loads(await cdp.evaluate(SCREEN_JS) or "{}")
        text = screen.get("text", "")
        if AAPL_ROW.search(text) and "MSFT" in text and "live" in text:
            return screen
        if time.monotonic() > deadline:
            shot = await cdp.call("Page.captureScreenshot", format="png")
            (tmp_path / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
            body = await cdp.evaluate("document.body.className")
            raise AssertionError(
                f"no live board in the browser after 40s (body class {body!r}, screenshot "
                f"{tmp_path / name}.png); terminal:\n{text}\nserver log:\n{log.read_text()[-3000:]}"
            )
        await asyncio.sleep(0.25)


async def page_text(cdp: DevTools, url: str) -> str:
    """Navigate to ``url`` and return the text of the page once it has loaded."""
    await cdp.call("Page.navigate", url=url)
    deadline = time.monotonic() + 15
    while True:
        state = await cdp.evaluate("location.href + ' ' + document.readyState")
        if state == f"{url} complete":
            return await cdp.evaluate("document.body ? document.body.innerText : ''")
        assert time.monotonic() < deadline, f"{url} did not load in 15s ({state})"
        await asyncio.sleep(0.1)


# aiohttp's access line of a refused handshake; the log wraps lines, so it is matched with all spacing removed.
REFUSED_SOCKET = re.compile(r'"GET/ws\?[^"]*HTTP/1\.1"403')


def refused_sockets(log: Path) -> int:
    """How many socket handshakes the web server has refused (403) so far."""
    return len(REFUSED_SOCKET.findall(re.sub(r"\s+", "", log.read_text())))


FOREIGN_JS = """<!doctype html><title>evil</title><script>
window.__outcome = "pending";
const ws = new WebSocket(%s);
ws.onopen = () => { window.__outcome = "opened"; };
ws.onclose = (e) => { window.__outcome = (window.__outcome === "opened" ? "opened " : "") + "closed " + e.code; };
</script>"""


@contextlib.contextmanager
def foreign_page(server: Running, tmp_path: Path) -> Iterator[str]:
    """A page served from another origin (another port on loopback) whose script opens the web
    terminal's socket with the secret; yields its URL."""
    import http.server
    import threading

    target = ws_url(server, token=server.token)
    body = (FOREIGN_JS % json.dumps(target)).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- the tests ------------------------------------------------------------------------------


async def test_tui_web_in_headless_chromium_renders_the_live_board(logged_in: LoggedIn, tmp_path: Path) -> None:
    port = infra.free_port()
    log = tmp_path / "web.log"
    with (
        web_server(logged_in.env, port, log) as server,
        chromium(tmp_path / "chromium") as browser,
    ):
        bare = server.address + "/"
        cookie = f"stockctl_web_{port}"
        page = await asyncio.to_thread(page_ws_url, browser.address)
        html = httpx.get(server.url, timeout=5).text
        assert ">stockctl<" in html  # textual-serve's page names the app
        script_url = urljoin(bare, next(m for m in re.findall(r'src="([^"]+)"', html) if m.endswith("textual.js")))
        script = httpx.get(script_url, cookies={cookie: server.token}, timeout=5)
        assert script.status_code == 200, script.text
        line, column = write_call(script.text)

        async with websockets.connect(page, max_size=64 * 1024 * 1024, **NO_PROXY) as ws:
            cdp = DevTools(ws)
            await cdp.call("Page.enable")
            await cdp.call("Runtime.enable")
            await cdp.call("Debugger.enable")
            await cdp.call("Network.enable")
            # Never pauses (the condition is false), but keeps the terminal where the page can reach it.
            await cdp.call(
                "Debugger.setBreakpointByUrl",
                url=script_url,
                lineNumber=line,
                columnNumber=column,
                condition="(window.__term = this.terminal, false)",
            )

            # Without the secret: the refusal, no terminal.
            text = await page_text(cdp, bare)
            assert '"error": "forbidden"' in text and "?token=" in text, text
            assert await cdp.evaluate("typeof window.__term") == "undefined"

            # The printed URL: the board, as the stored login's user, sized to the browser window
            # (wide layout: all panels).
            await cdp.call("Page.navigate", url=server.url)
            screen = await board(cdp, tmp_path, log, "failed")
            text = screen["text"]
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

            # The browser holds the secret as a cookie scripts cannot read and other sites cannot send...
            jar = (await cdp.call("Network.getCookies", urls=[bare]))["cookies"]
            held = next(c for c in jar if c["name"] == cookie)
            assert held["value"] == server.token and held["httpOnly"] and held["sameSite"] == "Strict", held
            assert await cdp.evaluate("document.cookie") == ""
            # ...so the bare URL, reloaded in this browser, opens the terminal again.
            await cdp.call("Page.navigate", url=bare)
            await board(cdp, tmp_path, log, "failed-reload")
            assert await cdp.evaluate("location.href") == bare

            # A page of another origin (another port of this host) that knows the secret still cannot
            # open the terminal: the browser sends its Origin, and the socket answers 403.
            sessions = len(apps(server))
            refusals = refused_sockets(log)
            with foreign_page(server, tmp_path) as evil:
                await page_text(cdp, evil)
                deadline = time.monotonic() + 15
                while (outcome := await cdp.evaluate("window.__outcome || ''")) in ("", "pending"):
                    assert time.monotonic() < deadline, "the foreign page's socket neither opened nor failed"
                    await asyncio.sleep(0.1)
            assert outcome.startswith("closed") and "opened" not in outcome, outcome
            assert len(apps(server)) <= sessions, "a foreign page started a terminal session"
            assert refused_sockets(log) > refusals, log.read_text()[-2000:]

    # Closing the browser ends the session; Ctrl+C stops the server: nothing is left running.
    assert browser.stopped_cleanly, "chromium did not exit on SIGTERM"
    assert server.stopped_cleanly, "stockctl tui --web (or an app it started) outlived Ctrl+C"
    # The secret is in the printed URL and nowhere else in the server's output (its access log included).
    output = log.read_text()
    assert output.count(server.token) == 1, output
    assert "GET /?token=... " in output, output


# --- the guard, over real sockets (no stack: a session's app runs disconnected) -------------


@pytest.fixture
def web_env(tmp_path: Path) -> dict[str, str]:
    """The environment of ``stockctl tui --web`` with an empty state dir and default settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_") and k not in ("COLUMNS", "LINES")}
    env.update(STOCKCTL_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")
    return env


def ws_url(server: Running, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"width": "80", "height": "24", **query}.items())
    return f"ws://127.0.0.1:{server.address.rsplit(':', 1)[1]}/ws?{params}"


async def handshake(url: str, **kwargs: Any) -> int:
    """The HTTP status of a WebSocket handshake at ``url`` (101 if it opened; closed at once)."""
    try:
        async with websockets.connect(url, open_timeout=15, **NO_PROXY, **kwargs):
            return 101
    except websockets.exceptions.InvalidStatus as exc:
        body = json.loads(exc.response.body or b"{}")
        assert set(body) == {"error", "detail"}, body
        return exc.response.status_code


def apps(server: Running) -> list[int]:
    """The app processes (``python -m tui``, and the shell textual-serve starts it with) the server
    runs now: the members of its process group other than itself."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == server.proc.pid:
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # Fields after the ")" that ends the command name: state, ppid, pgrp.
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == server.proc.pid:
                found.append(int(entry.name))
    return found


def sessions_ended(server: Running) -> None:
    """Each closed session's app exits (slowly on a busy machine: it must start before it can quit)."""
    wait_for(lambda: not apps(server), 90, 0.2, "the apps of the closed sessions to exit")


async def session(server: Running) -> websockets.ClientConnection:
    """An open terminal session (its app has drawn), as the page opens it."""
    ws = await websockets.connect(ws_url(server, token=server.token), origin=server.address, **NO_PROXY)
    got = 0
    while got < 1000:  # the app's first screen
        msg = await asyncio.wait_for(ws.recv(), 30)
        got += len(msg) if isinstance(msg, bytes) else 0
    return ws


async def test_tui_web_without_the_secret_answers_403_for_the_page_and_the_socket(
    web_env: dict[str, str], tmp_path: Path
) -> None:
    with web_server(web_env, infra.free_port(), tmp_path / "web.log") as server:
        cookie = f"stockctl_web_{server.address.rsplit(':', 1)[1]}"
        wrong = server.token[:-1] + ("A" if server.token[-1] != "A" else "B")
        for url, cookies in (
            (server.address + "/", {}),
            (server.address + "/?token=", {}),
            (f"{server.address}/?token={wrong}", {}),
            (server.address + "/", {cookie: wrong}),
            (server.address + "/static/js/textual.js", {}),
        ):
            resp = httpx.get(url, cookies=cookies, timeout=5)
            assert resp.status_code == 403, (url, resp.status_code)
            assert resp.json()["error"] == "forbidden" and "set-cookie" not in resp.headers, resp.text
        # The socket, from the page's own origin, without the secret or with a wrong one.
        assert await handshake(ws_url(server), origin=server.address) == 403
        assert await handshake(ws_url(server, token=wrong), origin=server.address) == 403
        assert (
            await handshake(ws_url(server), origin=server.address, additional_headers={"Cookie": f"{cookie}={wrong}"})
            == 403
        )
        # The secret, in the query or as the cookie the page set, opens both.
        page = httpx.get(server.url, timeout=5)
        assert page.status_code == 200 and ">stockctl<" in page.text
        set_cookie = page.headers["set-cookie"]
        assert set_cookie.startswith(f"{cookie}={server.token};"), set_cookie
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie, set_cookie
        assert page.headers["referrer-policy"] == "no-referrer"
        assert httpx.get(server.address + "/", cookies={cookie: server.token}, timeout=5).status_code == 200
        good = {"origin": server.address, "additional_headers": {"Cookie": f"{cookie}={server.token}"}}
        assert await handshake(ws_url(server), **good) == 101
        sessions_ended(server)
    assert server.stopped_cleanly


async def test_tui_web_socket_refuses_a_foreign_or_missing_origin_even_with_the_secret(
    web_env: dict[str, str], tmp_path: Path
) -> None:
    # Room for the sessions the accepted handshakes open (an app takes a moment to stop).
    env = {**web_env, "STOCKCTL_WEB_MAX_SESSIONS": "5"}
    with web_server(env, infra.free_port(), tmp_path / "web.log") as server:
        port = server.address.rsplit(":", 1)[1]
        url = ws_url(server, token=server.token)
        for origin in ("http://evil.example", f"http://evil.example:{port}", "http://127.0.0.1:1", "null"):
            assert await handshake(url, origin=origin) == 403, origin
        assert await handshake(url) == 403  # no Origin at all (websockets sends none unless told)
        # The served host, by any of its loopback names, is the page's own origin.
        for origin in (server.address, f"http://localhost:{port}", f"http://[::1]:{port}"):
            assert await handshake(url, origin=origin) == 101, origin
        sessions_ended(server)
    assert server.stopped_cleanly


async def test_tui_web_refuses_a_third_concurrent_session(web_env: dict[str, str], tmp_path: Path) -> None:
    with web_server(web_env, infra.free_port(), tmp_path / "web.log") as server:
        first, second = await session(server), await session(server)
        try:
            url = ws_url(server, token=server.token)
            assert await handshake(url, origin=server.address) == 429
            full = httpx.get(server.url, timeout=5)  # a new tab is told why, before its socket would be
            assert full.status_code == 429 and "STOCKCTL_WEB_MAX_SESSIONS" in full.json()["detail"], full.text
            assert len(apps(server)) >= 2, apps(server)  # an app per open session
            # The first two still work.
            for ws in (first, second):
                await ws.send(json.dumps(["ping", "1"]))
                while (msg := await asyncio.wait_for(ws.recv(), 15)) != '["pong", "1"]':
                    assert isinstance(msg, bytes), msg
        finally:
            await first.close()
        # A closed session frees its slot.
        wait = time.monotonic() + 15
        while (status := await handshake(url, origin=server.address)) != 101:
            assert status == 429 and time.monotonic() < wait, status
            await asyncio.sleep(0.2)
        await second.close()
        sessions_ended(server)
    assert server.stopped_cleanly


async def test_tui_web_session_cap_is_a_setting(web_env: dict[str, str], tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "stockctl", "tui", "--web", "--port", str(infra.free_port())],
        env={**web_env, "STOCKCTL_WEB_MAX_SESSIONS": "0"},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert bad.returncode == 2 and "STOCKCTL_WEB_MAX_SESSIONS" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    flag = subprocess.run(
        [sys.executable, "-m", "stockctl", "tui", "--web", "--web-max-sessions", "0"],
        env=web_env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert flag.returncode == 2 and flag.stderr == bad.stderr, flag.stderr
    # The flag overrides the environment.
    env = {**web_env, "STOCKCTL_WEB_MAX_SESSIONS": "4"}
    with web_server(env, infra.free_port(), tmp_path / "web.log", "--web-max-sessions", "1") as server:
        only = await session(server)
        assert await handshake(ws_url(server, token=server.token), origin=server.address) == 429
        await only.close()
        sessions_ended(server)
    assert server.stopped_cleanly


def test_tui_web_on_a_busy_port_is_one_line(web_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "stockctl", "tui", "--web", "--port", str(port)],
            env=web_env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=30,
        )
    assert busy.returncode == 1, busy
    assert busy.stderr.strip() == f"error: port {port} is already in use; free it, or choose another with --port"
    assert "token=" not in busy.stdout  # no URL is printed for a server that never ran
