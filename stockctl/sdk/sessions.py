"""Where the SDK's access tokens come from, and how they are renewed.

A :class:`TokenSource` hands out a valid :class:`~stockctl.client.credentials.Session` and
renews it when it is due or was refused. Three kinds:

* the CLI's stored login: :class:`~stockctl.client.credentials.LiveSession` (renewed under the
  credentials file's lock, so any number of processes share one login without tripping the
  server's refresh-token reuse detection);
* :class:`PasswordLogin`: an email and password (registering first if asked); the tokens live
  in memory only, are refreshed through ``/auth/refresh`` and, if the refresh token is gone,
  replaced by logging in again with the password;
* a fixed token (``LiveSession(settings, token)``): never renewed; a refusal ends the client.

Every method is synchronous and thread-safe (a lock); the async client calls them with
``asyncio.to_thread``, as the CLI's streams always have.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Protocol

from stockctl.client.credentials import AuthClient, AuthError, NotLoggedIn, Session
from stockctl.errors import ServiceUnavailable


class TokenSource(Protocol):
    """What a long-lived client needs of a login (:class:`~stockctl.client.credentials.LiveSession` is one)."""

    @property
    def renewable(self) -> bool: ...

    def current(self) -> Session: ...

    def renew(self, refused: str) -> Session: ...


class PasswordLogin:
    """A login by email and password, kept in memory and renewed before it expires.

    ``base_urls`` are the auth doors to try in turn (each gateway proxies ``/auth/*``): the first
    that answers is used, so a client that fails over between gateways also renews through
    whichever is up. ``register=True`` creates the account first (a 409, already taken, falls
    back to logging in).
    """

    renewable = True

    def __init__(self, base_urls: list[str], email: str, password: str, register: bool = False) -> None:
        if not base_urls:
            raise ValueError("PasswordLogin needs at least one base URL")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.email, self._password, self._register = email, password, register
        self._lock = threading.Lock()
        self._session: Session | None = None
        self.renewals = 0
        """How many times the access token was replaced after the first login."""

    def _call(self, what: str, *args: str) -> tuple[str, dict]:
        """``what`` on the first auth door that answers; ServiceUnavailable if none does."""
        last: ServiceUnavailable | None = None
        for url in self.base_urls:
            try:
                with AuthClient(url) as auth:
                    return url, getattr(auth, what)(*args)
            except ServiceUnavailable as exc:
                last = exc
        assert last is not None
        raise last

    def _login(self) -> Session:
        asked = time.time()
        if self._register:
            try:
                url, doc = self._call("register", self.email, self._password)
            except AuthError as exc:
                if exc.status != 409:
                    raise NotLoggedIn(exc.message) from None
                url, doc = self._login_doc()
            self._register = False  # once: a renewal logs in
        else:
            url, doc = self._login_doc()
        return Session.from_tokens(url, doc, asked)

    def _login_doc(self) -> tuple[str, dict]:
        try:
            return self._call("login", self.email, self._password)
        except AuthError as exc:
            raise NotLoggedIn(exc.message) from None

    def _refresh(self, session: Session) -> Session:
        asked = time.time()
        try:
            url, doc = self._call("refresh", session.refresh_token)
        except AuthError:
            return self._login()  # the refresh token is gone (revoked, expired): the password is not
        return Session.from_tokens(url, doc, asked)

    def current(self) -> Session:
        """A fresh session: the one held, or a renewed one."""
        with self._lock:
            if self._session is None:
                self._session = self._login()
            elif not self._session.fresh():
                self._session = self._refresh(self._session)
                self.renewals += 1
            return self._session

    def renew(self, refused: str) -> Session:
        """A fresh session whose token is not ``refused`` (another caller may have renewed already)."""
        with self._lock:
            held = self._session
            if held is not None and held.access_token != refused and held.fresh():
                return held
            self._session = self._login() if held is None else self._refresh(held)
            self.renewals += 1
            return self._session

    def logout(self) -> None:
        """Revoke the refresh token (best effort: an instance that is down has nothing to revoke)."""
        with self._lock:
            held, self._session = self._session, None
        if held is not None:
            with contextlib.suppress(ServiceUnavailable, AuthError):
                self._call("logout", held.refresh_token)

    def __repr__(self) -> str:
        return f"PasswordLogin(email={self.email!r})"
