"""The CLI's login, one per instance, and a small client of the auth API.

A session is kept in ``$XDG_CONFIG_HOME/stockctl/credentials/<key>.json`` (default
``~/.config``), mode 0600 in a 0700 directory, where ``<key>`` is a short SHA-256 of the
instance's base URL and state dir: logins to two instances never mix. The access token
is refreshed through ``{base}/auth/refresh`` when it has less than a third of its
lifetime (at most 30 s) to live; each refresh rotates the stored refresh token.

Several processes share one file (two ``watch`` terminals and the TUI, say), and the
server treats a spent refresh token presented again as theft and revokes every session.
So every refresh happens under an exclusive ``flock`` on ``<key>.lock``: the holder
re-reads the file, and if another process already rotated the tokens and the access
token is still fresh, it uses those instead of refreshing again. The file is replaced
atomically (a 0600 temp file, then rename), so a reader never sees half a session.

:class:`LiveSession` is the one place long-lived clients (``watch``, ``alert watch``,
``book --watch``, the TUI, the SDK's :mod:`stockctl.sdk.stream`) get their tokens from: it
says when the token it handed out is due and renews it under that lock.

The base URL is the gateway's (``stockctl.client.resolve_gateway_url``), which proxies
``/auth/*``; ``STOCKCTL_AUTH_BASE_URL`` overrides it (tests, or an auth daemon reached
directly).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stockctl.errors import ServiceUnavailable, StockctlError, UsageError
from stockctl.settings import Settings

if TYPE_CHECKING:
    import httpx

ENV_BASE_URL = "STOCKCTL_AUTH_BASE_URL"
REFRESH_MARGIN_S = 30
"""Refresh the access token when it expires within this many seconds (or a third of its
lifetime, if that is shorter: a 10 s token is renewed 3.3 s before it expires)."""


class NotLoggedIn(StockctlError):
    """No usable session for this instance."""

    exit_code = 4

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(f"not logged in ({reason})" if reason else "not logged in", "run `stockctl login EMAIL`")


class AuthError(StockctlError):
    """The auth service refused a request; the message is the server's reason."""

    def __init__(self, message: str, status: int, error: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status, self.error = status, error


# --- HTTP client ------------------------------------------------------------------------------


class AuthClient:
    """Synchronous client of ``/auth/*``; HTTP errors become one-line StockctlErrors."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        from stockctl.client.failover import FailoverHttp  # here: shell completion must start fast

        self._http = FailoverHttp(base_url, timeout=timeout)
        self.base_url = self._http.label  # for messages: every gateway it may try

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"cannot reach {self.base_url} ({exc.__class__.__name__})", "is the instance up? `stockctl status`"
            ) from None
        if resp.status_code >= 400:
            raise self._error(resp)
        return resp

    def _error(self, resp: httpx.Response) -> StockctlError:
        try:
            body = resp.json()
            error = str(body.get("error", ""))
            detail = str(body.get("detail") or error or resp.reason_phrase)
        except (ValueError, AttributeError):
            error, detail = "", (resp.text.strip().splitlines() or [resp.reason_phrase])[0][:200]
        status = resp.status_code
        if status in (400, 413, 415, 422):
            return UsageError(detail)
        if status == 404:
            return ServiceUnavailable(
                f"no auth service at {self.base_url} ({detail})", f"check {ENV_BASE_URL} or `stockctl status`"
            )
        if status >= 500:
            return ServiceUnavailable(f"auth service error {status} at {self.base_url}: {detail}")
        return AuthError(detail, status, error)

    def _tokens(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        return self._send("POST", path, json=body).json()

    def register(self, email: str, password: str) -> dict[str, Any]:
        return self._tokens("/auth/register", {"email": email, "password": password})

    def login(self, email: str, password: str) -> dict[str, Any]:
        return self._tokens("/auth/login", {"email": email, "password": password})

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        return self._tokens("/auth/refresh", {"refresh_token": refresh_token})

    def logout(self, refresh_token: str) -> None:
        self._send("POST", "/auth/logout", json={"refresh_token": refresh_token})

    def me(self, access_token: str) -> dict[str, Any]:
        return self._send("GET", "/auth/me", headers={"Authorization": f"Bearer {access_token}"}).json()


# --- stored session ----------------------------------------------------------------------------


@dataclass
class Session:
    base_url: str
    email: str
    access_token: str
    access_exp: float
    """Unix time the access token expires (local clock: when we asked + the server's expires_in)."""
    refresh_token: str
    lifetime_s: float = 0.0
    """The access token's lifetime as the server gave it (0: unknown, a file of an older version)."""

    @classmethod
    def from_tokens(cls, base_url: str, doc: dict[str, Any], asked_at: float | None = None) -> Session:
        """The session of an auth response; ``asked_at`` is when the request was sent."""
        lifetime = float(doc["expires_in"])
        # The server counts from its whole second (exp = int(now) + ttl), which may be up to
        # 1 s before we asked: count from then too, so we never think a token lives longer.
        start = (asked_at if asked_at is not None else time.time()) - 1.0
        return cls(
            base_url=base_url,
            email=str(doc["email"]),
            access_token=str(doc["access_token"]),
            access_exp=start + lifetime,
            refresh_token=str(doc["refresh_token"]),
            lifetime_s=lifetime,
        )

    def expires_in(self) -> float:
        return self.access_exp - time.time()

    def margin(self) -> float:
        """How long before expiry the access token is due for renewal."""
        return min(REFRESH_MARGIN_S, self.lifetime_s / 3) if self.lifetime_s > 0 else REFRESH_MARGIN_S

    def fresh(self) -> bool:
        return self.expires_in() > self.margin()

    def renew_in(self) -> float:
        """Seconds until this access token is due for renewal (0 or less: now)."""
        return self.expires_in() - self.margin()

    def __repr__(self) -> str:  # tokens never reach logs or tracebacks
        return f"Session(base_url={self.base_url!r}, email={self.email!r})"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stockctl"


def base_url(settings: Settings) -> str:
    """Where the CLI reaches ``/auth/*``: ``STOCKCTL_AUTH_BASE_URL``, else the gateway."""
    explicit = os.environ.get(ENV_BASE_URL)
    if explicit:
        return explicit.rstrip("/")
    from stockctl.instance.registry import resolve_gateway_url

    return resolve_gateway_url(settings)


def instance_key(url: str, home: Path) -> str:
    return hashlib.sha256(f"{url}\n{home.expanduser().resolve()}".encode()).hexdigest()[:16]


def credentials_path(settings: Settings, url: str | None = None) -> Path:
    url = url or base_url(settings)
    return config_dir() / "credentials" / f"{instance_key(url, settings.home)}.json"


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def save(settings: Settings, session: Session) -> Path:
    """Write the session atomically (0600 temp file, fsync, rename), readable by this user only."""
    path = credentials_path(settings, session.base_url)
    _private_dir(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(session), fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(settings: Settings) -> Session | None:
    """The stored session of this instance, or None (also for an unreadable file)."""
    path = credentials_path(settings)
    try:
        doc = json.loads(path.read_text())
        return Session(
            base_url=str(doc["base_url"]),
            email=str(doc["email"]),
            access_token=str(doc["access_token"]),
            access_exp=float(doc["access_exp"]),
            refresh_token=str(doc["refresh_token"]),
            lifetime_s=float(doc.get("lifetime_s") or 0.0),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def clear(settings: Settings) -> bool:
    """Forget the stored session; whether there was one."""
    path = credentials_path(settings)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    _private_dir(path.parent)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _rotate(settings: Settings, refused: str | None, force: bool = False) -> Session:
    """Under the lock: the stored session if another process already renewed it, else a refresh.

    ``refused`` is the access token the caller has (or the gateway refused): a stored token
    other than it, still fresh, is the one another process rotated to, and is used as is.
    """
    path = credentials_path(settings)
    with _locked(path):
        session = load(settings)  # again, under the lock: another process may have refreshed
        if session is None:
            raise NotLoggedIn()
        if not force and session.access_token != refused and session.fresh():
            return session
        asked_at = time.time()
        try:
            with AuthClient(session.base_url) as client:
                doc = client.refresh(session.refresh_token)
        except AuthError as exc:
            clear(settings)
            raise NotLoggedIn(exc.message) from None
        fresh = Session.from_tokens(session.base_url, doc, asked_at)
        save(settings, fresh)
        return fresh


def refresh_session(settings: Settings, force: bool = False) -> Session:
    """The stored session with a fresh access token (rotating the refresh token if due, or ``force``)."""
    return _rotate(settings, None, force)


class LiveSession:
    """The access token of one long-lived client, kept valid for as long as it runs.

    :meth:`current` hands out a valid token (the stored one, or a renewed one);
    :meth:`renew` is called when the token a client uses is due (``Session.renew_in``) or
    was refused, and returns the token to use next. Both go through the shared file and its
    lock, so any number of processes on one login rotate the refresh token once per due
    time. With an explicit token (a string, or a function giving one) nothing is stored or
    renewed: such a session is not :attr:`renewable`, and a refused token ends it.
    """

    def __init__(self, settings: Settings, token: str | Callable[[], str] | None = None) -> None:
        self.settings = settings
        self._fixed: Callable[[], str] | None
        if isinstance(token, str):
            fixed = token
            self._fixed = lambda: fixed
        else:
            self._fixed = token

    @property
    def renewable(self) -> bool:
        return self._fixed is None

    def current(self) -> Session:
        """A valid session: the stored one while it is fresh, else renewed (under the lock)."""
        if self._fixed is not None:
            return Session("", "", self._fixed(), math.inf, "")
        stored = load(self.settings)
        if stored is None:
            raise NotLoggedIn()
        if stored.fresh():
            return stored
        return _rotate(self.settings, stored.access_token)

    def renew(self, refused: str) -> Session:
        """A session whose access token is not ``refused`` (due or turned down), fresh.

        Uses the tokens another process already rotated to when they are fresh; refreshes
        otherwise. Raises NotLoggedIn when the login is gone (logged out, revoked, expired).
        """
        if self._fixed is not None:
            raise NotLoggedIn("the token given was refused or expired")
        return _rotate(self.settings, refused)

    def __repr__(self) -> str:
        return f"LiveSession(renewable={self.renewable})"


def access_token(settings: Settings) -> str:
    """A valid access token for this instance, refreshed if it is about to expire."""
    return LiveSession(settings).current().access_token
