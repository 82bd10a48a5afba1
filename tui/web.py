"""``stockctl tui --web``: the same app in a browser, through textual-serve, behind a guard.

Whoever drives the web terminal trades as the logged-in operator, so the server is closed by
default (the way Jupyter is):

- **A secret per run.** Each run draws ``secrets.token_urlsafe(32)`` and prints the only URL that
  works, ``http://HOST:PORT/?token=SECRET``. A request that presents it (``?token=``) gets an
  ``HttpOnly; SameSite=Strict`` cookie, so reloads and the page's own requests (scripts, the
  socket) need no token in the URL. Without the secret (query or cookie, compared in constant
  time), every path, the page and the socket alike, answers 403. The secret is printed once and
  never logged: the access log shows ``token=...`` instead.
- **Same origin only.** The socket also requires an ``Origin`` header naming the host it serves
  (for a loopback bind: ``127.0.0.1``, ``localhost`` or ``[::1]`` on its port); a foreign or
  missing Origin is 403, secret or not. A page on another site cannot reach the socket, and a
  SameSite=Strict cookie is not sent from one anyway.
- **A few sessions.** At most ``web_max_sessions`` (``STOCKCTL_WEB_MAX_SESSIONS``, default 2)
  terminals at once; one more is refused with 429, on the page and on the socket, and the slot
  frees when a session ends.

Refusals are JSON ``{"error", "detail"}``. textual-serve has no hooks for any of this: the guard is
an aiohttp middleware on the application textual-serve builds.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from textual_serve.server import Server

from stockctl.errors import StockctlError
from stockctl.instance import infra
from stockctl.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# The secret never reaches a log line: aiohttp's access log writes the request line with its query.
TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+")


def web_command() -> str:
    """The command textual-serve runs for each browser session.

    textual-serve runs it through ``/bin/sh -c``; ``exec`` makes the app the shell's replacement
    rather than its child, so a signal for the session reaches the app itself.
    """
    return f"exec {shlex.quote(sys.executable)} -m tui"


def url_host(host: str) -> str:
    """``host`` as it appears in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class RedactToken(logging.Filter):
    """Replaces the secret in a log record with ``...`` (the access log carries query strings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = TOKEN_IN_TEXT.sub(r"\1...", record.getMessage())
        record.args = None
        return True


class WebPortInUse(StockctlError):
    """The port of ``stockctl tui --web`` is taken."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is already in use", "free it, or choose another with --port")


def refusal(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


class WebGuard:
    """Secret, Origin and session-count checks in front of every route of the web terminal."""

    def __init__(self, host: str, port: int, max_sessions: int, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self.port = port
        self.max_sessions = max_sessions
        self.sessions = 0
        # Per port: a cookie is scoped to the host, not the port, and two servers may run at once.
        self.cookie = f"stockctl_web_{port}"
        hosts = LOOPBACK_NAMES if is_loopback(host) else (url_host(host),)
        self.origins = frozenset(f"http://{h}:{port}" for h in hosts)

    def url(self, host: str) -> str:
        """The one URL that opens the terminal (it carries the secret)."""
        return f"http://{url_host(host)}:{self.port}/?token={self.token}"

    def presented(self, request: web.Request) -> tuple[bool, bool]:
        """Whether the request holds the secret, and whether it came in the query (set the cookie)."""
        query = request.query.get("token", "")
        if query and secrets.compare_digest(query.encode(), self.token.encode()):
            return True, True
        cookie = request.cookies.get(self.cookie, "")
        return bool(cookie) and secrets.compare_digest(cookie.encode(), self.token.encode()), False

    def origin_ok(self, request: web.Request) -> bool:
        """The page's own origin sent the handshake (browsers always send Origin on a WebSocket)."""
        return request.headers.get("Origin", "") in self.origins

    def full(self) -> web.Response:
        return refusal(
            429,
            "too many sessions",
            f"{self.sessions} web terminals are open already (the most is {self.max_sessions}); "
            "close one, or raise STOCKCTL_WEB_MAX_SESSIONS",
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ok, from_query = self.presented(request)
        if not ok:
            return refusal(
                403, "forbidden", "open the URL with ?token= that `stockctl tui --web` printed when it started"
            )
        if request.path == "/ws":
            if not self.origin_ok(request):
                return refusal(403, "forbidden origin", "the terminal's socket answers only its own page")
            if self.sessions >= self.max_sessions:
                return self.full()
            # No await between the check and the count: two handshakes cannot both take the last slot.
            self.sessions += 1
            try:
                return await handler(request)  # returns when the session ends
            finally:
                self.sessions -= 1
        if request.path == "/" and self.sessions >= self.max_sessions:
            return self.full()  # a readable refusal, before the page's socket would be refused
        response = await handler(request)
        if response.prepared:  # a download streams itself: its headers are sent already
            return response
        if from_query:
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
        # The page's URL holds the secret: never send it on as a Referer, never cache it, never frame it.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response


class GuardedServer(Server):
    """textual-serve's server with :class:`WebGuard` in front and without its own banner (which
    shows the bare URL, which answers 403)."""

    def __init__(self, command: str, guard: WebGuard, **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self.guard = guard

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.guard.middleware)
        return app

    async def on_startup(self, app: web.Application) -> None:
        pass

    def initialize_logging(self) -> None:
        super().initialize_logging()
        logging.getLogger("aiohttp.access").addFilter(RedactToken())


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8703) -> str:
    """Serve the app until interrupted; returns the URL it printed (with the secret).

    Each browser tab runs its own ``python -m tui`` with this instance's state dir (and so its
    stored login).
    """
    if not infra.port_is_free(host, port):  # one line, not aiohttp's bind traceback
        raise WebPortInUse(port)
    os.environ["STOCKCTL_HOME"] = str(settings.home)
    guard = WebGuard(host, port, settings.web_max_sessions)
    public = f"http://{url_host(host)}:{port}"
    server = GuardedServer(web_command(), guard, host=host, port=port, title="stockctl", public_url=public)
    url = guard.url(host)
    print(f"stockctl tui serving on {url} (Ctrl+C to stop)", flush=True)
    try:
        server.serve()
    except OSError as exc:  # taken between the check and the bind
        if exc.errno == errno.EADDRINUSE:
            raise WebPortInUse(port) from None
        raise
    return url
