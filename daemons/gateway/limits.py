"""REST rate limits per user, and CORS, for the gateway's HTTP app.

* :class:`RateLimiter`: a fixed window per user (``rest_rate_limit`` requests every
  ``rest_rate_window_s``; 0 turns it off). A request is counted once its caller is known: the
  token's user, or the client's address for an anonymous market-data read. Each gateway
  counts its own callers: two gateways behind a balancer allow up to twice the limit.
* :func:`charge` counts a request and raises :class:`RateLimited` past the limit (the app
  answers 429 with ``Retry-After``); :class:`RateHeaders` puts ``X-RateLimit-Limit``,
  ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds until the window ends) on every
  counted answer, 429s included.
* :func:`add_cors`: off unless ``cors_origins`` names origins (Starlette's CORSMiddleware).
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockctl.errors import StockctlError
from stockctl.settings import Settings

STATE_KEY = "ratelimit"  # scope["state"] entry: (limit, remaining, reset in s)
EXPOSED = ("X-Next-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")


class RateLimited(StockctlError):
    """Past the caller's request limit for this window: 429."""

    def __init__(self, message: str, hint: str, retry_after: int) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class RateLimiter:
    """Fixed windows: ``limit`` requests per key every ``window_s`` (``limit`` 0: no limit)."""

    def __init__(self, limit: int, window_s: float, clock: Any = time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window number, requests in it)

    def hit(self, key: str) -> tuple[bool, int, int]:
        """Count one request of ``key``: (allowed, remaining, seconds until the window ends)."""
        now = self.clock()
        window = int(now // self.window_s)
        reset = max(1, math.ceil((window + 1) * self.window_s - now))
        if len(self._counts) > 10_000:  # forget callers of past windows (bounded memory)
            self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        seen, count = self._counts.get(key, (window, 0))
        count = count + 1 if seen == window else 1
        self._counts[key] = (window, count)
        return count <= self.limit, max(0, self.limit - count), reset


def charge(limiter: RateLimiter, request: Request, key: str) -> None:
    """Count ``request`` for ``key``; :class:`RateLimited` past the limit."""
    if not limiter.limit:
        return
    allowed, remaining, reset = limiter.hit(key)
    request.scope.setdefault("state", {})[STATE_KEY] = (limiter.limit, remaining, reset)
    if not allowed:
        raise RateLimited(
            f"rate limit: {limiter.limit} requests per {limiter.window_s:g} s",
            f"retry after {reset} s (Retry-After)",
            reset,
        )


class RateHeaders:
    """ASGI middleware: the ``X-RateLimit-*`` headers of a counted request on its answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                counted = scope["state"].get(STATE_KEY)
                if counted is not None:
                    headers = MutableHeaders(scope=message)
                    limit, remaining, reset = counted
                    headers["X-RateLimit-Limit"] = str(limit)
                    headers["X-RateLimit-Remaining"] = str(remaining)
                    headers["X-RateLimit-Reset"] = str(reset)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_cors(app: FastAPI, settings: Settings) -> None:
    """CORS for ``cors_origins`` only; nothing at all (browsers refuse cross-origin reads) without."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=list(EXPOSED),
        max_age=600,
    )
