"""User accounts: email and password rules, Argon2id hashes, and their Redis records.

* :func:`normalise_email` and :func:`check_password_policy` are pure (and unit-tested).
* :class:`UserStore` is the async store the auth daemon uses: users, refresh-token
  sessions (rotated, revocable, reuse-detected) and the login throttles.
* :func:`list_users` and :func:`set_disabled` are the synchronous operator side behind
  ``stockctl users ...``: they talk to the instance's Redis directly.

Emails are stored normalised: Unicode NFKC first (a fullwidth ``ａlice`` is ``alice``), then
:mod:`email_validator` syntax rules (no deliverability check), then the whole address
lower-cased, local part included. ``Alice@Example.COM`` and ``alice@example.com`` are one
account. Look-alikes are refused: a local part or domain label that mixes scripts (a Cyrillic
``а`` among Latin letters) is not a valid address here, and an address whose *skeleton* (each
character that Unicode's confusables table maps to a Latin one replaced by it, UTS #39 style,
via :mod:`confusable_homoglyphs`) is the skeleton of an existing account is refused at
registration, so ``аре@example.com`` in Cyrillic cannot shadow ``ape@example.com``. Passwords are NFKC-normalised before
hashing and checking, so the same password typed on any keyboard layout matches.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import unicodedata
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from confusable_homoglyphs import confusables
from email_validator import EmailNotValidError, validate_email
from redis.exceptions import WatchError

from stockctl.errors import NotFound, ServiceUnavailable, StockctlError, UsageError
from stockctl.runtime.connections import sync_redis_client
from stockctl.settings import mask_url
from stockctl.wire import names
from stockctl.wire.nats_urls import nats_options

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from stockctl.settings import Settings

MAX_EMAIL_CHARS = 254
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 128
MAX_REFRESH_TOKEN_CHARS = 256

_COMMON = """
    0123456789 1234567890 12345678910 123456789a 1234567890a a123456789 aa12345678 9876543210 987654321a
    1122334455 1212121212 1231231231 123123123123 11223344556677 123qweasdzxc 1234qwerasdf 1234abcd!@
    qwertyuiop qwerty1234 qwerty12345 qwerty123456 qwertyqwerty 1q2w3e4r5t 1qaz2wsx3edc 1qazxsw23edc
    q1w2e3r4t5 q1w2e3r4t5y6 zaq12wsxcde3 qazwsxedc123 qazwsxedcrfv asdfghjkl1 asdfghjkl; asdf123456
    asdfasdfasdf zxcvbnm123 abcdefghij abcd123456 abc1234567 abc123abc123 password12 password123
    password1234 password12345 password1! passw0rd123 p@ssw0rd123 passwordpassword mypassword mypassword1
    thisismypassword iloveyou12 iloveyou123 lovelove12 letmein123 letmeinplease welcome123 welcome1234
    admin12345 adminadmin administrator changeme123 secret1234 hello12345 helloworld helloworld1
    football123 baseball123 princess123 sunshine123 monkey1234 dragon1234 trustno1234 starwars123
    superman123 batman1234 whatever123 michael1234 jennifer123 computer123 internet123 stockctl123
    stockctl1234 stockctlpassword correcthorsebatterystaple
"""
COMMON_PASSWORDS = frozenset(_COMMON.split())
"""Common passwords long enough to pass the length rule; compared case-insensitively."""


class InvalidEmail(ValueError):
    """An email address that is not acceptable; the message says why."""


class WeakPassword(ValueError):
    """A password the policy refuses; the message says which rule."""


def normalise_email(text: str) -> str:
    """The canonical form of an email address, or :class:`InvalidEmail`."""
    if not isinstance(text, str):
        raise InvalidEmail("email address must be a string")
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        raise InvalidEmail("email address is empty")
    if len(text) > MAX_EMAIL_CHARS:
        raise InvalidEmail(f"email address is too long (at most {MAX_EMAIL_CHARS} characters)")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"not a valid email address: {exc}") from None
    email = result.normalized.lower()
    if len(email) > MAX_EMAIL_CHARS:
        raise InvalidEmail(f"email address is too long (at most {MAX_EMAIL_CHARS} characters)")
    local, _, domain = email.rpartition("@")
    for part in (local, *domain.split(".")):
        if not part.isascii() and confusables.is_mixed_script(part):
            raise InvalidEmail(f"{part!r} mixes scripts, as look-alikes of other addresses do; use one script per part")
    return email


@functools.lru_cache(maxsize=4096)
def _latin_lookalike(char: str) -> str:
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"]) or []
    for entry in found:
        for glyph in entry["homoglyphs"]:
            if glyph["c"].isascii():
                return glyph["c"].lower()
    return char


def skeleton(email: str) -> str:
    """``email`` with every non-ASCII character that looks like a Latin one replaced by it."""
    return "".join(c if c.isascii() else _latin_lookalike(c) for c in email)


def prepare_password(password: str) -> str:
    """The form of a password that is checked and hashed (Unicode NFKC)."""
    return unicodedata.normalize("NFKC", password)


def check_password_policy(password: str, email: str = "") -> None:
    """Raise :class:`WeakPassword` naming the first rule ``password`` breaks."""
    if not isinstance(password, str):
        raise WeakPassword("password must be a string")
    password = prepare_password(password)
    if len(password) < MIN_PASSWORD_CHARS:
        raise WeakPassword(f"password must be at least {MIN_PASSWORD_CHARS} characters (got {len(password)})")
    if len(password) > MAX_PASSWORD_CHARS:
        raise WeakPassword(f"password must be at most {MAX_PASSWORD_CHARS} characters")
    if len(set(password)) == 1:
        raise WeakPassword("password must not be one character repeated")
    folded = password.casefold()
    if email:
        address = email.strip().casefold()
        if folded in (address, address.partition("@")[0]):
            raise WeakPassword("password must not be your email address")
    if folded in COMMON_PASSWORDS:
        raise WeakPassword("password is one of the most common passwords; choose another")


# --- password hashes ----------------------------------------------------------------------

HASHER = PasswordHasher()
"""Argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""


def hash_password(password: str) -> str:
    return HASHER.hash(prepare_password(password))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, prepare_password(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def token_hash(token: str) -> str:
    """Refresh tokens are stored only by their SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    email: str
    password_hash: str
    created: float
    disabled: bool

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> User | None:
        if not raw or b"email" not in raw:
            return None
        return cls(
            email=raw[b"email"].decode(),
            password_hash=raw.get(b"hash", b"").decode(),
            created=float(raw.get(b"created", b"0")),
            disabled=raw.get(b"disabled", b"0") == b"1",
        )


class Refresh(Enum):
    OK = "ok"
    INVALID = "invalid"
    REUSED = "reused"
    DISABLED = "disabled"


@dataclass(frozen=True)
class RefreshResult:
    status: Refresh
    email: str | None = None
    token: str | None = None
    revoked: int = 0


@dataclass(frozen=True)
class Throttle:
    """Outcome of reserving a login attempt: ``kind`` is None, ``"email"`` or ``"ip"``."""

    kind: str | None
    retry_after: int = 0


# Lua keeps each multi-key change atomic (the keys all come from stockctl.wire.names).
CREATE_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return -1 end
if KEYS[4] ~= KEYS[1] and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'email', ARGV[1], 'hash', ARGV[2], 'created', ARGV[3], 'disabled', '0')
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[1])
return 1
"""

RESERVE_REGISTRATION = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
  return ttl
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

LOOKALIKE: Any = object()
"""What :meth:`UserStore.create` returns for an email that looks like an existing account's."""

NEW_SESSION = """
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

ROTATE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 1 then return -1 end
local left = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[2])
if left > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', left) end
redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
"""

REVOKE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""

RESERVE_LOGIN = """
local function over(key, limit)
  local n = tonumber(redis.call('GET', key) or '0')
  if n < tonumber(limit) then return nil end
  local ttl = redis.call('TTL', key)
  if ttl < 1 then redis.call('EXPIRE', key, ARGV[3]); ttl = tonumber(ARGV[3]) end
  return ttl
end
local t = over(KEYS[1], ARGV[1])
if t then return {1, t} end
t = over(KEYS[2], ARGV[2])
if t then return {2, t} end
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[3]) end
end
return {0, 0}
"""

RELEASE_LOGIN = """
redis.call('DEL', KEYS[1])
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > 1 then redis.call('DECR', KEYS[2]) elseif n == 1 then redis.call('DEL', KEYS[2]) end
return 1
"""


class UserStore:
    """Async access to users, sessions and login throttles in Redis (auth daemon)."""

    def __init__(self, r: aioredis.Redis) -> None:
        self.r = r
        self._create = r.register_script(CREATE_USER)
        self._reserve_registration = r.register_script(RESERVE_REGISTRATION)
        self._new_session = r.register_script(NEW_SESSION)
        self._rotate = r.register_script(ROTATE)
        self._revoke = r.register_script(REVOKE)
        self._reserve = r.register_script(RESERVE_LOGIN)
        self._release = r.register_script(RELEASE_LOGIN)

    # --- users ------------------------------------------------------------------------

    async def create(self, email: str, password_hash: str) -> User | None:
        """The new user; None if ``email`` is taken; :data:`LOOKALIKE` if it looks like one that is.

        The skeleton key finds look-alikes of accounts made since it exists; ``user_key(skeleton)``
        those of older all-ASCII accounts, whose skeleton is their own email."""
        created = time.time()
        skel = skeleton(email)
        keys = [names.user_key(email), names.USERS_KEY, names.skeleton_key(skel), names.user_key(skel)]
        ok = await self._create(keys=keys, args=[email, password_hash, created])
        if ok == -1:
            return LOOKALIKE
        return User(email, password_hash, created, False) if ok else None

    async def reserve_registration(self, ip: str, limit: int, window_s: int) -> int:
        """Count one registration from ``ip``: 0, or the seconds until another is allowed."""
        return int(await self._reserve_registration(keys=[names.registrations_key(ip)], args=[limit, window_s]))

    async def get(self, email: str) -> User | None:
        return User.from_hash(await self.r.hgetall(names.user_key(email)))

    async def set_hash(self, email: str, password_hash: str) -> None:
        await self.r.hset(names.user_key(email), "hash", password_hash)

    async def is_disabled(self, email: str) -> bool:
        return bool(await self.r.sismember(names.DISABLED_KEY, email))

    async def count(self) -> int:
        return int(await self.r.scard(names.USERS_KEY))

    # --- sessions (refresh tokens) ------------------------------------------------------

    async def new_session(self, email: str, ttl_s: int) -> str | None:
        """A new refresh token for ``email``; None if the account is disabled."""
        token = secrets.token_urlsafe(32)
        h = token_hash(token)
        ok = await self._new_session(
            keys=[names.refresh_key(h), names.sessions_key(email), names.DISABLED_KEY], args=[email, h, ttl_s]
        )
        if not ok:
            return None
        await self._prune(email)
        return token

    async def _prune(self, email: str) -> None:
        """Forget session hashes whose refresh token has expired on its own."""
        key = names.sessions_key(email)
        members = list(await self.r.smembers(key))
        if len(members) < 8:
            return
        pipe = self.r.pipeline(transaction=False)
        for h in members:
            pipe.exists(names.refresh_key(h.decode()))
        alive = await pipe.execute()
        dead = [h for h, ok in zip(members, alive, strict=True) if not ok]
        if dead:
            await self.r.srem(key, *dead)

    async def rotate(self, token: str, ttl_s: int) -> RefreshResult:
        """Spend ``token`` for a new one. A token spent before revokes every session."""
        if not token or len(token) > MAX_REFRESH_TOKEN_CHARS:
            return RefreshResult(Refresh.INVALID)
        h = token_hash(token)
        owner = await self.r.get(names.refresh_key(h))
        if owner is None:
            used_by = await self.r.get(names.used_refresh_key(h))
            if used_by is None:
                return RefreshResult(Refresh.INVALID)
            email = used_by.decode()
            revoked = await self.revoke_all(email)
            await self.r.delete(names.used_refresh_key(h))
            return RefreshResult(Refresh.REUSED, email, revoked=revoked)
        email = owner.decode()
        new = secrets.token_urlsafe(32)
        new_h = token_hash(new)
        keys = [
            names.refresh_key(h),
            names.used_refresh_key(h),
            names.sessions_key(email),
            names.refresh_key(new_h),
            names.DISABLED_KEY,
        ]
        done = await self._rotate(keys=keys, args=[email, h, new_h, ttl_s])
        if done == -1:
            return RefreshResult(Refresh.DISABLED, email)
        if done != 1:
            # Spent by a concurrent request between GET and the script: that is a reuse.
            return await self.rotate(token, ttl_s)
        return RefreshResult(Refresh.OK, email, new)

    async def revoke(self, token: str) -> str | None:
        """Revoke one refresh token; the email it belonged to, or None."""
        if not token or len(token) > MAX_REFRESH_TOKEN_CHARS:
            return None
        h = token_hash(token)
        owner = await self.r.get(names.refresh_key(h))
        if owner is None:
            return None
        email = owner.decode()
        done = await self._revoke(keys=[names.refresh_key(h), names.sessions_key(email)], args=[email, h])
        return email if done else None

    async def revoke_all(self, email: str) -> int:
        """Revoke every refresh token of ``email``; how many there were."""
        key = names.sessions_key(email)
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    members = [h.decode() for h in await pipe.smembers(key)]
                    pipe.multi()
                    for h in members:
                        pipe.delete(names.refresh_key(h))
                    pipe.delete(key)
                    results = await pipe.execute()
                    return sum(int(n) for n in results[:-1])
                except WatchError:
                    continue

    # --- login throttle --------------------------------------------------------------

    async def reserve_login(self, email: str, ip: str, max_email: int, max_ip: int, window_s: int) -> Throttle:
        """Count this attempt as a failure up front (concurrent guesses cannot slip past the
        limit); :meth:`login_succeeded` takes it back. Over a limit: nothing is counted."""
        kind, ttl = await self._reserve(
            keys=[names.login_failures_key("email", email), names.login_failures_key("ip", ip)],
            args=[max_email, max_ip, window_s],
        )
        if kind == 0:
            return Throttle(None)
        return Throttle("email" if kind == 1 else "ip", max(1, int(ttl)))

    async def login_succeeded(self, email: str, ip: str) -> None:
        await self._release(keys=[names.login_failures_key("email", email), names.login_failures_key("ip", ip)])


# --- operator side (sync, ``stockctl users``) -------------------------------------------------


@dataclass(frozen=True)
class UserInfo:
    email: str
    created: float
    disabled: bool
    sessions: int
    announced: bool = False  # set_disabled: the gateways were told on NATS (else their periodic check)

    def doc(self) -> dict[str, Any]:
        from datetime import UTC, datetime

        return {
            "email": self.email,
            "created": datetime.fromtimestamp(self.created, UTC).isoformat(timespec="seconds"),
            "disabled": self.disabled,
            "sessions": self.sessions,
        }


def _sync_redis(settings: Settings) -> tuple[redis.Redis, str]:
    from stockctl.instance.registry import resolve_urls

    _, url = resolve_urls(settings)
    try:
        return sync_redis_client(url), url
    except UNREACHABLE as exc:  # a cluster client asks a node for the slot map at once
        raise _unavailable(url, exc) from None


UNREACHABLE = (redis.ConnectionError, redis.exceptions.RedisClusterException)
"""What redis-py raises when it reaches no server (one server's, and the cluster client's own)."""


def _unavailable(url: str, exc: Exception) -> Exception:
    return ServiceUnavailable(f"cannot reach Redis at {mask_url(url)} ({exc})", "is the instance up? `stockctl status`")


def _live_sessions(r: redis.Redis, email: str) -> int:
    members = [h.decode() for h in r.smembers(names.sessions_key(email))]
    if not members:
        return 0
    return int(r.exists(*(names.refresh_key(h) for h in members)))


def _info(r: redis.Redis, email: str) -> UserInfo | None:
    user = User.from_hash(r.hgetall(names.user_key(email)))
    if user is None:
        return None
    disabled = bool(r.sismember(names.DISABLED_KEY, email))
    return UserInfo(user.email, user.created, disabled, _live_sessions(r, email))


def list_users(settings: Settings) -> list[UserInfo]:
    """Every account of the instance, by email."""
    r, url = _sync_redis(settings)
    try:
        emails = sorted(e.decode() for e in r.smembers(names.USERS_KEY))
        return [info for e in emails if (info := _info(r, e)) is not None]
    except UNREACHABLE as exc:
        raise _unavailable(url, exc) from None
    finally:
        r.close()


def set_disabled(settings: Settings, email: str, disabled: bool) -> UserInfo:
    """Disable (and revoke every session of) or re-enable an account."""
    try:
        email = normalise_email(email)
    except InvalidEmail as exc:
        raise UsageError(str(exc)) from None
    r, url = _sync_redis(settings)
    try:
        if not r.exists(names.user_key(email)):
            raise NotFound(f"no account {email}", "list them with `stockctl users list`")
        pipe = r.pipeline(transaction=True)
        if disabled:
            pipe.sadd(names.DISABLED_KEY, email)
        else:
            pipe.srem(names.DISABLED_KEY, email)
        pipe.hset(names.user_key(email), "disabled", "1" if disabled else "0")
        pipe.execute()
        if disabled:
            # After the SADD no new session can start (the scripts check the set), so
            # this empties the session set for good.
            _revoke_all_sync(r, email)
        info = _info(r, email)
        assert info is not None
        if disabled:
            info = replace(info, announced=announce_disabled(settings, email))
        return info
    except UNREACHABLE as exc:
        raise _unavailable(url, exc) from None
    finally:
        r.close()


def _revoke_all_sync(r: redis.Redis, email: str) -> None:
    key = names.sessions_key(email)
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                members = [h.decode() for h in pipe.smembers(key)]
                pipe.multi()
                for h in members:
                    pipe.delete(names.refresh_key(h))
                pipe.delete(key)
                pipe.execute()
                return
            except WatchError:
                continue


def announce_disabled(settings: Settings, email: str, timeout_s: float = 2.0) -> bool:
    """Tell every gateway on NATS that ``email`` is disabled, so it closes its sockets now.

    False when NATS cannot be reached: the account is disabled in Redis all the same, and
    each gateway's periodic check (``STOCKCTL_DISABLED_CHECK_S``) closes the sockets then.
    """
    import asyncio
    import contextlib
    import json

    import nats

    from stockctl.instance.registry import resolve_urls

    try:
        url, _ = resolve_urls(settings)
    except StockctlError:
        return False

    async def quiet(_: Exception) -> None:
        pass

    async def send() -> None:
        nc = await nats.connect(
            **nats_options(url), name="stockctl-users", allow_reconnect=False, connect_timeout=timeout_s, error_cb=quiet
        )
        try:
            await nc.publish(names.ACCOUNT_DISABLED_SUBJECT, json.dumps({"email": email}).encode())
            await nc.flush(timeout=timeout_s)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    try:
        asyncio.run(asyncio.wait_for(send(), timeout_s * 2))
    except Exception:  # NATS down or unreachable: the periodic check covers it
        return False
    return True
