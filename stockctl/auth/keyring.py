"""The auth daemons' signing keys: one ring in Redis that every auth instance shares.

Contract:

* The ring is the Redis hash :data:`~stockctl.wire.names.SIGNING_KEYS_KEY` (hash tag ``{auth}``,
  one slot on a cluster). ``current`` names the kid every instance signs with; ``key:<kid>``
  holds each key's public half and its private half *wrapped*; ``retire:<kid>`` is the unix
  time after which a replaced key is no longer trusted. JWKS lists every key not past it.
* The first key is made atomically: a Lua script sets ``current`` only if there is none, so two
  instances starting at once, each with a key of its own, end up with the one that won.
  :meth:`SigningKeys.rotate` likewise makes a new key current and stamps the old one's
  retirement in one script.
* A replaced key stays trusted for :func:`retire_after` seconds: the access-token lifetime, two
  reload periods (an instance may sign with the old key until its next reload), the clock
  leeway and ``signing_key_grace_s``. Every token it signed has expired by then; afterwards it
  is dropped from JWKS and deleted from Redis, so a token made with it later (a leaked key) is
  refused.
* Existing installs signed with ``secrets/jwt-ed25519.pem``: on the first start after the
  upgrade that key seeds the ring, with its own kid, so tokens issued before stay valid. The
  file is deleted when its key retires (it must not seed a ring again).

Why Redis and not files in ``secrets/``: every auth instance already shares Redis, on one host
or many, and a rotation made anywhere must reach all of them; files in ``secrets/`` are per
host and would have to be copied at each rotation. Redis gives the atomic first create and
rotation for free. The cost is private keys in Redis, where a read (an RDB/AOF file, a backup,
a replica) would let anyone mint tokens, which no password hash or hashed refresh token stored
there allows. So the private keys are stored encrypted (AES-256-GCM, the kid as associated
data) with a key-encryption key kept outside Redis: ``secrets/jwt-keyring.key`` (0600, made
once by whichever daemon or command needs it first). An auth daemon on another host needs a
copy of that file, as a gateway there needs ``secrets/gateway-proxy.key``; without it the
ring's keys cannot be opened and the daemon says so in one line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.exceptions import RedisError

from stockctl.auth.jwks import FreshKeys
from stockctl.auth.secretfile import create_once
from stockctl.auth.tokens import LEEWAY_S, TokenSigner, TokenVerifier, key_id, load_key, public_jwk
from stockctl.errors import ServiceUnavailable, StockctlError
from stockctl.runtime.retry import retry
from stockctl.runtime.status import StateLog
from stockctl.wire import names

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from stockctl.settings import Settings

KEK_FILE = "jwt-keyring.key"
"""The key-encryption key of the ring, inside ``settings.secrets_dir``."""

LEGACY_KEY_FILE = "jwt-ed25519.pem"
"""The one signing key of installs before the ring; it seeds the ring once."""

RING = names.SIGNING_KEYS_KEY

log = logging.getLogger("stockctl.auth")

# Set ``current`` only if no usable one is there: of two instances racing, one key wins.
SEED = """
local cur = redis.call('HGET', KEYS[1], 'current')
if cur and redis.call('HEXISTS', KEYS[1], 'key:' .. cur) == 1 then return cur end
redis.call('HSET', KEYS[1], 'key:' .. ARGV[1], ARGV[2], 'current', ARGV[1])
return ARGV[1]
"""

# A new current key, and the old one's retirement, in one step: no instance can read a ring
# where the old key is gone before the new one is there.
ROTATE = """
local cur = redis.call('HGET', KEYS[1], 'current')
redis.call('HSET', KEYS[1], 'key:' .. ARGV[1], ARGV[2], 'current', ARGV[1])
if cur and cur ~= ARGV[1] and redis.call('HEXISTS', KEYS[1], 'key:' .. cur) == 1 then
  redis.call('HSET', KEYS[1], 'retire:' .. cur, ARGV[3])
  return cur
end
return false
"""


class KeyRingError(StockctlError):
    """The signing keys cannot be read, opened or changed."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_kek(secrets_dir: Path) -> bytes:
    """The ring's key-encryption key (32 bytes), made once (0600) if this state dir has none."""
    path = Path(secrets_dir) / KEK_FILE
    if not path.exists():
        create_once(path, _b64(os.urandom(32)) + "\n")
    return _read_kek(path)


def load_kek(secrets_dir: Path) -> bytes:
    """The key-encryption key that must already exist (operator commands never make one)."""
    path = Path(secrets_dir) / KEK_FILE
    if not path.exists():
        raise KeyRingError(
            f"no {path}",
            "run this on a host of the instance's auth daemons, or copy the file there from one (mode 0600)",
        )
    return _read_kek(path)


def _read_kek(path: Path) -> bytes:
    try:
        kek = _unb64(path.read_text().strip())
    except (ValueError, binascii.Error):
        kek = b""
    if len(kek) != 32:
        raise KeyRingError(f"{path} is not a key-encryption key", "restore it from a host of the instance")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # never leave it readable by others
    return kek


def retire_after(settings: Settings) -> float:
    """Seconds a replaced key stays trusted: until every token it may still sign has expired."""
    return settings.access_token_ttl_s + 2 * settings.signing_key_reload_s + LEEWAY_S + settings.signing_key_grace_s


@dataclass(frozen=True)
class RingKey:
    """One key of the ring: public half, private half still wrapped, retirement if replaced."""

    kid: str
    public: Ed25519PublicKey
    wrapped: bytes
    created: float
    retire_at: float | None = None

    def unwrap(self, kek: bytes) -> Ed25519PrivateKey:
        try:
            raw = AESGCM(kek).decrypt(self.wrapped[:12], self.wrapped[12:], self.kid.encode())
        except (InvalidTag, ValueError):
            raise KeyRingError(
                f"cannot open signing key {self.kid}: it was wrapped with another {KEK_FILE}",
                f"copy secrets/{KEK_FILE} from the host whose auth daemon made it",
            ) from None
        return Ed25519PrivateKey.from_private_bytes(raw)

    def state(self, current: str | None, now: float) -> str:
        if self.kid == current:
            return "current"
        return "retiring" if self.retire_at is None or self.retire_at > now else "retired"


def wrap(key: Ed25519PrivateKey, kek: bytes, created: float | None = None) -> tuple[str, str]:
    """``(kid, entry)``: the ring's ``key:<kid>`` value for ``key``."""
    kid = key_id(key.public_key())
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(kek).encrypt(nonce, raw, kid.encode())
    x = public_jwk(key.public_key())["x"]
    entry = {"x": x, "wrapped": _b64(sealed), "created": time.time() if created is None else created}
    return kid, json.dumps(entry, separators=(",", ":"))


@dataclass(frozen=True)
class Ring:
    """What the ring holds at one moment (retired keys included until they are deleted)."""

    current: str | None
    keys: dict[str, RingKey] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Ring:
        """Parse HGETALL's answer; an entry that does not parse is left out (it verifies nothing)."""
        fields = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
        keys: dict[str, RingKey] = {}
        for name, value in fields.items():
            if not name.startswith("key:"):
                continue
            kid = name[4:]
            try:
                doc = json.loads(value)
                public = Ed25519PublicKey.from_public_bytes(_unb64(doc["x"]))
                wrapped, created = _unb64(doc["wrapped"]), float(doc["created"])
                retire = fields.get(f"retire:{kid}")
                retire_at = float(retire) if retire is not None else None
            except (ValueError, KeyError, TypeError, binascii.Error):
                continue
            if key_id(public) == kid:  # a kid is the hash of its key: anything else is not ours
                keys[kid] = RingKey(kid, public, wrapped, created, retire_at)
        return cls(fields.get("current"), keys)

    def trusted(self, now: float | None = None) -> list[RingKey]:
        """Keys whose tokens verify: the current one and those not yet retired, newest first."""
        now = time.time() if now is None else now
        live = [k for k in self.keys.values() if k.state(self.current, now) != "retired"]
        return sorted(live, key=lambda k: k.created, reverse=True)

    def retired(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return [k.kid for k in self.keys.values() if k.state(self.current, now) == "retired"]

    def jwks(self, now: float | None = None) -> dict[str, list[dict[str, str]]]:
        return {"keys": [public_jwk(k.public) for k in self.trusted(now)]}

    def verifier(self, now: float | None = None) -> TokenVerifier:
        return TokenVerifier(self.jwks(now))

    def signer(self, kek: bytes, ttl_s: int) -> TokenSigner:
        """The signer of the current key; :class:`KeyRingError` if there is none or it cannot be opened."""
        if self.current is None or self.current not in self.keys:
            raise KeyRingError("the signing key ring has no current key", "start an auth daemon: it makes one")
        return TokenSigner(self.keys[self.current].unwrap(kek), ttl_s)


class SigningKeys:
    """The ring in Redis, as the auth daemons and the operator commands change it (async)."""

    def __init__(self, r: aioredis.Redis, kek: bytes) -> None:
        self.r, self.kek = r, kek
        self._seed = r.register_script(SEED)
        self._rotate = r.register_script(ROTATE)

    async def read(self) -> Ring:
        return Ring.from_hash(await self.r.hgetall(RING))

    async def ensure(self, seed: Ed25519PrivateKey | None = None) -> Ring:
        """The ring, with a current key: ``seed`` (or a new key) if it had none, unless another
        instance made one first."""
        ring = await self.read()
        if ring.current in ring.keys:
            return ring
        kid, entry = wrap(seed or Ed25519PrivateKey.generate(), self.kek)
        await self._seed(keys=[RING], args=[kid, entry])
        return await self.read()

    async def rotate(self, retire_in_s: float) -> tuple[str, str | None, float]:
        """Make a new current key: ``(new kid, old kid or None, when the old one retires)``."""
        ring = await self.read()
        if ring.current is None or ring.current not in ring.keys:
            raise KeyRingError("no signing keys yet", "start the instance (`stockctl up`): auth makes the first key")
        ring.keys[ring.current].unwrap(self.kek)  # a key wrapped with another file would be useless to the daemons
        kid, entry = wrap(Ed25519PrivateKey.generate(), self.kek)
        retire_at = time.time() + retire_in_s
        old = await self._rotate(keys=[RING], args=[kid, entry, f"{retire_at:.3f}"])
        return kid, old.decode() if isinstance(old, bytes) else None, retire_at

    async def prune(self, ring: Ring, now: float | None = None) -> list[str]:
        """Delete the retired keys of ``ring`` (no key is ever trusted again once retired)."""
        gone = ring.retired(now)
        if gone:
            await self.r.hdel(RING, *[f for kid in gone for f in (f"key:{kid}", f"retire:{kid}")])
        return gone


# --- an auth daemon's side -------------------------------------------------------------------


class LiveRing(FreshKeys):
    """An auth daemon's view of the ring: the signer it issues tokens with, the verifier of
    ``/auth/me``, re-read every ``signing_key_reload_s`` (and on a token of an unknown kid)."""

    def __init__(self, keys: SigningKeys, ttl_s: int, legacy: Path | None = None) -> None:
        super().__init__()
        self.keys, self.ttl_s = keys, ttl_s
        self.ring = Ring(None)
        self.signer: TokenSigner | None = None
        self.legacy = legacy
        self.legacy_kid = key_id(load_key(legacy).public_key()) if legacy and legacy.exists() else None
        self._state = StateLog(log, "signing keys")

    @classmethod
    async def start(cls, r: aioredis.Redis, settings: Settings, stop: asyncio.Event) -> LiveRing:
        """The ring of the instance, seeded (legacy key file, else a new key) if it has no key yet."""
        legacy = Path(settings.secrets_dir) / LEGACY_KEY_FILE
        live = cls(SigningKeys(r, load_or_create_kek(settings.secrets_dir)), settings.access_token_ttl_s, legacy)
        seed = load_key(legacy) if live.legacy_kid else None
        ring = await retry(lambda: live.keys.ensure(seed), stop=stop, retry_on=RedisError, what="Redis")
        await live.apply(ring)
        return live

    async def apply(self, ring: Ring) -> None:
        """Sign and verify with ``ring`` from now on; :class:`KeyRingError` if its current key cannot be opened."""
        if (ring.current not in ring.keys) and self.signer is not None:
            ring = await self.keys.ensure(self.signer.private_key)  # Redis lost the ring: ours seeds it again
        signer = ring.signer(self.keys.kek, self.ttl_s)
        before, self.ring, self.signer, self.verifier = self.signer, ring, signer, ring.verifier()
        if before is not None and before.kid != signer.kid:
            log.info("signing with key %s now (was %s)", signer.kid, before.kid)
        if self.legacy_kid and self.legacy_kid not in ring.keys and self.legacy:
            # Retired (or never used here): it must not seed a ring again.
            self.legacy.unlink(missing_ok=True)
            log.info("deleted %s: its key %s is not in the ring (retired)", self.legacy.name, self.legacy_kid)
            self.legacy_kid = None

    async def _fetch(self) -> bool:
        try:
            ring = await self.keys.read()
            gone = await self.keys.prune(ring)
            for kid in gone:
                log.info("retired signing key %s: it is out of JWKS", kid)
            await self.apply(Ring(ring.current, {k: v for k, v in ring.keys.items() if k not in gone}))
        except (RedisError, KeyRingError) as exc:
            kid = self.signer.kid if self.signer else "-"
            self._state.set("stale", f"cannot reload them ({exc}); signing with {kid} still")
            return False
        self._state.set("ok")
        return True

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys, read from Redis now: another instance may already sign with a key this
        one has not reloaded yet (what it last read, if Redis does not answer)."""
        try:
            return (await self.keys.read()).jwks()
        except RedisError:
            return self.ring.jwks()


# --- the operator's side (``stockctl auth ...``) ------------------------------------------------


def _operator(settings: Settings, work: Any) -> Any:
    """Run ``work(SigningKeys)`` against the running instance's Redis; one-line errors."""
    import redis

    from stockctl.instance.registry import resolve_urls
    from stockctl.runtime.connections import redis_client
    from stockctl.settings import mask_url

    _, url = resolve_urls(settings)  # not running: say that first
    kek = load_kek(settings.secrets_dir)

    async def run() -> Any:
        r = redis_client(settings.model_copy(update={"redis_url": url}), retries=0)
        try:
            return await work(SigningKeys(r, kek))
        finally:
            await r.aclose()

    try:
        return asyncio.run(run())
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException) as exc:
        raise ServiceUnavailable(
            f"cannot reach Redis at {mask_url(url)} ({exc})", "is the instance up? `stockctl status`"
        ) from None


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def key_docs(ring: Ring, now: float | None = None) -> list[dict[str, Any]]:
    """The ring as the operator sees it, newest first: kid, state, created, retire_at (ISO 8601 UTC)."""
    now = time.time() if now is None else now
    keys = sorted(ring.keys.values(), key=lambda k: k.created, reverse=True)
    return [
        {"kid": k.kid, "state": k.state(ring.current, now), "created": iso(k.created), "retire_at": iso(k.retire_at)}
        for k in keys
    ]


def list_keys(settings: Settings) -> list[dict[str, Any]]:
    """Every key in the ring of the running instance."""

    async def work(keys: SigningKeys) -> list[dict[str, Any]]:
        return key_docs(await keys.read())

    result: list[dict[str, Any]] = _operator(settings, work)
    return result


def rotate_key(settings: Settings) -> dict[str, Any]:
    """Make a new current key; the old one retires after :func:`retire_after` of ``settings``
    (the command's own: the instance's config file and environment, as the daemons read them)."""

    async def work(keys: SigningKeys) -> tuple[str, str | None, float]:
        return await keys.rotate(retire_after(settings))

    kid, old, retire_at = _operator(settings, work)
    return {
        "kid": kid,
        "replaced": old,
        "retire_at": iso(retire_at) if old else None,
        "picked_up_within_s": settings.signing_key_reload_s,
    }


def current_signer(settings: Settings) -> TokenSigner:
    """The signer of the ring's current key (what the instance's auth daemons sign with)."""

    async def work(keys: SigningKeys) -> TokenSigner:
        return (await keys.read()).signer(keys.kek, settings.access_token_ttl_s)

    signer: TokenSigner = _operator(settings, work)
    return signer
