"""Who is calling: the auth daemon's signing keys and the check every request and socket passes.

:class:`KeyRing` holds the auth daemon's public keys (its JWKS): fetched at start-up, every
``jwks_refresh_s``, and when a token names a key it does not know (a rotated key), at most one
fetch a second (:class:`stockctl.auth.jwks.RemoteKeys`).
:func:`check_user` turns an ``Authorization`` header into the caller's claims, or raises
:class:`Unauthorized` (no valid token: HTTP 401, WebSocket close 4401) or :class:`Forbidden`
(a disabled account: 403, close 4403). Tokens are verified locally; only the disabled set is
read from Redis, so a disabled account is refused on its next request.
:func:`market_reader` is the check of a market-data read: none with ``public_market_data``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from fastapi import Request

from stockctl.auth.jwks import RemoteKeys
from stockctl.auth.tokens import Claims, TokenError
from stockctl.errors import StockctlError
from stockctl.settings import Settings
from stockctl.wire import names

log = logging.getLogger("stockctl.gateway")


class KeyRing(RemoteKeys):
    """The auth daemon's public keys as the gateway checks tokens with them (see RemoteKeys)."""

    @classmethod
    def for_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.effective_auth_url, refresh_s=settings.jwks_refresh_s)


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
