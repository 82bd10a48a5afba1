"""A verifier that keeps the auth daemon's JWKS fresh, so signing keys can rotate under it.

Contract of :class:`RemoteKeys` (the gateway's; :class:`FreshKeys` is the part it shares with
the auth daemons' own view of the key ring, :class:`stockctl.auth.keyring.LiveRing`):

* :meth:`~RemoteKeys.load` fetches ``{auth_url}/.well-known/jwks.json`` until it succeeds
  (auth often starts beside its verifiers) or ``stop`` is set.
* :meth:`~RemoteKeys.keep_fresh` fetches it again every ``refresh_s``: a key retired from JWKS
  is refused within that long, a new one known without waiting for a token to name it.
* A token naming an unknown ``kid`` makes :meth:`~RemoteKeys.verify` fetch again, and only then
  answer. Such fetches are single-flight and at most one per ``refetch_min_s``: a token waits
  for the next allowed fetch (so the first tokens of a new key are not refused because some
  other fetch just happened) and every token that was waiting is answered by it. A flood of
  made-up kids therefore costs auth one request per ``refetch_min_s``, not one per token.
* A failed fetch keeps the keys it had (an outage of auth does not lock everyone out) and is
  logged once until a fetch succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from stockctl.auth.tokens import Claims, TokenError, TokenVerifier
from stockctl.runtime.retry import PEER_BACKOFF, pause
from stockctl.runtime.status import StateLog

log = logging.getLogger("stockctl.auth.jwks")

REFETCH_MIN_S = 1.0
"""Fewest seconds between two fetches that tokens of unknown keys ask for."""


class FreshKeys:
    """Verifies with keys that may change under it: :meth:`refresh` reads them again (a
    subclass says from where, in :meth:`_fetch`); an unknown kid asks for that, as the module
    says."""

    def __init__(self, refetch_min_s: float = REFETCH_MIN_S) -> None:
        self.refetch_min_s = refetch_min_s
        self.verifier: TokenVerifier | None = None
        self._tried_at = float("-inf")  # when the last fetch started, whatever its outcome
        self.lock = asyncio.Lock()  # one fetch at a time: a periodic one and those unknown kids ask for

    @property
    def kids(self) -> list[str]:
        return sorted(self.verifier.keys) if self.verifier else []

    async def _fetch(self) -> bool:
        """Read the keys and set :attr:`verifier`; False (the old keys kept) if that fails."""
        raise NotImplementedError

    async def refresh(self) -> bool:
        """Read the keys now; False (and the old keys kept) if that fails."""
        self._tried_at = time.monotonic()
        return await self._fetch()

    async def keep_fresh(self, stop: asyncio.Event, every_s: float) -> None:
        """Read the keys every ``every_s`` until ``stop``."""
        while not await pause(every_s, stop):
            async with self.lock:
                await self.refresh()

    async def verify(self, token: str) -> Claims:
        """The claims of a valid token; :class:`TokenError` otherwise (see the module's contract)."""
        assert self.verifier is not None, "load the keys first"
        try:
            return self.verifier.verify(token)
        except TokenError as exc:
            if exc.reason != "unknown key":
                raise
        asked = time.monotonic()
        async with self.lock:
            if self._tried_at < asked:  # no fetch has started since this token came: one must
                await asyncio.sleep(max(0.0, self._tried_at + self.refetch_min_s - time.monotonic()))
                await self.refresh()
        return self.verifier.verify(token)


class RemoteKeys(FreshKeys):
    """The auth daemon's public keys over HTTP: fetched at start, every ``refresh_s``, and on unknown kids."""

    def __init__(self, auth_url: str, refresh_s: float = 60.0, refetch_min_s: float = REFETCH_MIN_S) -> None:
        super().__init__(refetch_min_s)
        self.auth_url, self.refresh_s = auth_url, refresh_s
        self._state = StateLog(log, f"JWKS of {auth_url}")

    async def load(self, stop: asyncio.Event) -> bool:
        """Fetch until it succeeds (True) or ``stop`` is set (False)."""
        attempt = 0
        while not stop.is_set():
            if await self.refresh():
                return True
            await pause(PEER_BACKOFF.delay(attempt), stop)  # auth starts beside us
            attempt += 1
        return False

    async def _fetch(self) -> bool:
        try:
            verifier = await TokenVerifier.fetch(self.auth_url)
        except TokenError as exc:
            self._state.set("unreachable", f"{exc.reason}; keeping the keys fetched before")
            return False
        before = self.kids
        self.verifier = verifier
        self._state.set("ok")
        if before and before != self.kids:
            log.info("JWKS keys now %s (were %s)", ",".join(self.kids), ",".join(before))
        return True

    async def keep_fresh(self, stop: asyncio.Event, every_s: float | None = None) -> None:
        """Fetch every ``refresh_s`` until ``stop``."""
        await super().keep_fresh(stop, self.refresh_s if every_s is None else every_s)
