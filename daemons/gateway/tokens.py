"""Who is calling: the auth daemon's signing keys and the check every request and socket passes.

:class:`KeyRing` holds the auth daemon's public keys (its JWKS), fetched at start-up and again,
at most every 10 s, when a token names a key the ring does not know (a key rotation).
:func:`check_user` turns an ``Authorization`` header into the caller's claims, or raises
:class:`Unauthorized` (no valid token: HTTP 401, WebSocket close 4401) or :class:`Forbidden`
(a disabled account: 403, close 4403). Tokens are verified locally; only the disabled set is
read from Redis, so a disabled account is refused on its next request.
:func:`market_reader` is the check of a market-data read: none with ``public_market_data``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from fastapi import Request

from stockctl.auth.tokens import Claims, TokenError, TokenVerifier
from stockctl.errors import StockctlError
from stockctl.runtime.retry import PEER_BACKOFF, pause
from stockctl.settings import Settings
from stockctl.wire import names

log = logging.getLogger("stockctl.gateway")


class KeyRing:
    """The auth daemon's public keys, fetched at start and again when an unknown key appears."""

    def __init__(self, auth_url: str) -> None:
        self.auth_url = auth_url
        self.verifier: TokenVerifier | None = None
        self._last_fetch = 0.0

    async def load(self, stop: asyncio.Event) -> bool:
        attempt = 0
        while not stop.is_set():
            try:
                self.verifier = await TokenVerifier.fetch(self.auth_url)
                self._last_fetch = time.monotonic()
                return True
            except Exception as exc:  # auth not up yet: retry
                if attempt == 0:
                    log.warning("cannot fetch JWKS from %s (%s); retrying", self.auth_url, exc)
                await pause(PEER_BACKOFF.delay(attempt), stop)  # auth starts beside us
                attempt += 1
        return False

    async def verify(self, token: str) -> Claims:
        assert self.verifier is not None
        try:
            return self.verifier.verify(token)
        except TokenError as exc:
            # A rotated key: refetch at most every 10 s, so bad tokens cannot hammer auth.
            if "unknown key" not in exc.reason or time.monotonic() - self._last_fetch < 10:
                raise
        self._last_fetch = time.monotonic()
        with contextlib.suppress(Exception):
            self.verifier = await TokenVerifier.fetch(self.auth_url)
        return self.verifier.verify(token)


async def check_user(r: aioredis.Redis, keys: KeyRing, authorization: str | None) -> Claims:
    """Claims of a valid bearer token of an enabled user, else a 401/403 StockctlError."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token", "log in: `stockctl login EMAIL`")
    try:
        claims = await keys.verify(authorization[7:].strip())
    except TokenError as exc:
        raise Unauthorized(f"invalid token: {exc.reason}", "log in again: `stockctl login EMAIL`") from None
    if await r.sismember(names.DISABLED_KEY, claims.email):
        raise Forbidden("account disabled", "ask the operator to enable it")
    return claims


class Unauthorized(StockctlError):
    """No valid token."""


class Forbidden(StockctlError):
    """A valid token of a user who may not do this."""


Reader = Callable[[Request], Awaitable[Claims | None]]


def market_reader(settings: Settings, user: Callable[[Request], Awaitable[Claims]]) -> Reader:
    """The check for a market-data read: none with ``public_market_data``, else ``user``'s token."""

    async def read(request: Request) -> Claims | None:
        if settings.public_market_data:
            return None
        return await user(request)

    return read
