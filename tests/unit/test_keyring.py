"""The signing key ring's pieces: wrapping, parsing, retirement, the first-key race (on a real
valkey), and the refetch rule of verifiers whose keys change under them."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockctl.auth.jwks import FreshKeys
from stockctl.auth.keyring import (
    KEK_FILE,
    RING,
    KeyRingError,
    Ring,
    SigningKeys,
    key_docs,
    load_kek,
    load_or_create_kek,
    retire_after,
    wrap,
)
from stockctl.auth.tokens import TokenError, TokenSigner, TokenVerifier, key_id
from stockctl.settings import Settings
from tests.support.stack import Servers

KEK = bytes(range(32))


def raw_ring(current: str | None, *entries: tuple[str, str], **retire: float) -> dict[bytes, bytes]:
    raw = {f"key:{kid}".encode(): entry.encode() for kid, entry in entries}
    raw |= {f"retire:{kid}".encode(): str(at).encode() for kid, at in retire.items()}
    if current:
        raw[b"current"] = current.encode()
    return raw


def test_a_wrapped_key_opens_with_its_kek_only_and_signs_tokens_that_verify() -> None:
    key = Ed25519PrivateKey.generate()
    kid, entry = wrap(key, KEK)
    ring = Ring.from_hash(raw_ring(kid, (kid, entry)))

    signer = ring.signer(KEK, ttl_s=60)
    token, _ = signer.issue("ada@example.com")

    assert signer.kid == kid == key_id(key.public_key())
    assert ring.verifier().verify(token).kid == kid
    assert "wrapped" in json.loads(entry) and "BEGIN" not in entry  # no private key in the clear
    with pytest.raises(KeyRingError, match=r"wrapped with another jwt-keyring\.key"):
        ring.signer(bytes(32), ttl_s=60)


def test_a_wrapped_key_moved_under_another_kid_does_not_open() -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    kid_a, entry_a = wrap(a, KEK)
    kid_b, _ = wrap(b, KEK)
    swapped = json.loads(entry_a) | {"x": json.loads(wrap(b, KEK)[1])["x"]}  # b's public, a's sealed private

    ring = Ring.from_hash(raw_ring(kid_b, (kid_b, json.dumps(swapped))))

    with pytest.raises(KeyRingError):  # the kid is the associated data of the seal
        ring.signer(KEK, ttl_s=60)
    assert kid_a not in ring.keys


def test_jwks_lists_current_and_retiring_keys_and_drops_retired_and_malformed_ones() -> None:
    now = time.time()
    keys = [wrap(Ed25519PrivateKey.generate(), KEK, created=now - i) for i in range(3)]
    (cur, e1), (old, e2), (gone, e3) = keys
    raw = raw_ring(cur, (cur, e1), (old, e2), (gone, e3), **{old: now + 30, gone: now - 1})
    raw[b"key:junk"] = b"{not json"
    raw[b"key:" + cur[:8].encode()] = e2.encode()  # an entry whose kid is not its key's hash

    ring = Ring.from_hash(raw)

    assert [k["kid"] for k in ring.jwks(now)["keys"]] == [cur, old]
    assert ring.retired(now) == [gone]
    assert [(d["kid"], d["state"]) for d in key_docs(ring, now)] == [
        (cur, "current"),
        (old, "retiring"),
        (gone, "retired"),
    ]
    assert set(TokenVerifier(ring.jwks(now)).keys) == {cur, old}


def test_a_replaced_key_outlives_every_token_it_may_still_sign(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, access_token_ttl_s=300, signing_key_reload_s=10, signing_key_grace_s=60)

    # An instance may sign with the old key until its next reload; that token lives a TTL more.
    assert retire_after(s) >= s.access_token_ttl_s + s.signing_key_reload_s + 5
    assert retire_after(s) == 300 + 20 + 5 + 60


def test_the_kek_is_made_once_private_and_a_bad_one_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError, match="copy the file there"):
        load_kek(tmp_path)

    kek = load_or_create_kek(tmp_path)

    assert len(kek) == 32 and load_or_create_kek(tmp_path) == kek == load_kek(tmp_path)
    assert stat.S_IMODE((tmp_path / KEK_FILE).stat().st_mode) == 0o600
    (tmp_path / KEK_FILE).write_text("short\n")
    with pytest.raises(KeyRingError, match="is not a key-encryption key"):
        load_kek(tmp_path)


# --- the first key, raced, on a real server ----------------------------------------------------------


@pytest.mark.integration
def test_instances_creating_the_first_key_at_once_agree_on_one(clean: Servers) -> None:
    async def race(n: int) -> tuple[set[str | None], int, set[str]]:
        clients = [aioredis.Redis.from_url(clean.redis_url) for _ in range(n)]
        try:
            rings = await asyncio.gather(*(SigningKeys(c, KEK).ensure(Ed25519PrivateKey.generate()) for c in clients))
        finally:
            for c in clients:
                await c.aclose()
        stored = Ring.from_hash(redis.Redis.from_url(clean.redis_url).hgetall(RING))
        return {r.current for r in rings}, len(stored.keys), {stored.current or ""}

    for _ in range(10):
        redis.Redis.from_url(clean.redis_url).delete(RING)
        currents, stored_keys, stored_current = asyncio.run(race(6))

        assert len(currents) == 1 and None not in currents, currents  # every instance signs with the one key
        assert stored_keys == 1  # the losers' keys were never stored
        assert currents == stored_current


@pytest.mark.integration
def test_rotate_makes_a_new_current_key_and_stamps_the_old_ones_retirement(clean: Servers) -> None:
    async def go() -> tuple[Ring, Ring, str, str | None, float]:
        r = aioredis.Redis.from_url(clean.redis_url)
        keys = SigningKeys(r, KEK)
        try:
            first = await keys.ensure()
            new, old, at = await keys.rotate(30)
            return first, await keys.read(), new, old, at
        finally:
            await r.aclose()

    first, after, new, old, at = asyncio.run(go())

    assert old == first.current and new == after.current != old
    assert after.keys[old].retire_at == pytest.approx(at, abs=0.01)
    assert after.keys[new].retire_at is None
    assert [k["kid"] for k in after.jwks()["keys"]] == [new, old]


@pytest.mark.integration
def test_rotate_refuses_an_empty_ring_and_a_kek_that_opens_nothing(clean: Servers) -> None:
    async def go(kek: bytes, first: bool = False) -> None:
        r = aioredis.Redis.from_url(clean.redis_url)
        try:
            await (SigningKeys(r, kek).ensure() if first else SigningKeys(r, kek).rotate(30))
        finally:
            await r.aclose()

    def stored() -> Ring:
        return Ring.from_hash(redis.Redis.from_url(clean.redis_url).hgetall(RING))

    with pytest.raises(KeyRingError, match="no signing keys yet"):
        asyncio.run(go(KEK))
    asyncio.run(go(KEK, first=True))
    before = stored()
    with pytest.raises(KeyRingError, match="wrapped with another"):
        asyncio.run(go(bytes(32)))  # its new key would be one no daemon could open
    assert stored() == before and len(before.keys) == 1


# --- verifiers whose keys change ----------------------------------------------------------------------


class Source(FreshKeys):
    """Keys from a list a test changes; counts the fetches."""

    def __init__(self, signers: list[TokenSigner], refetch_min_s: float) -> None:
        super().__init__(refetch_min_s)
        self.signers, self.fetches = signers, 0

    async def _fetch(self) -> bool:
        self.fetches += 1
        self.verifier = TokenVerifier({"keys": [k for s in self.signers for k in s.jwks()["keys"]]})
        return True


async def test_an_unknown_kid_fetches_once_for_all_the_tokens_waiting_and_no_more_often_than_allowed() -> None:
    a = TokenSigner(Ed25519PrivateKey.generate())
    source = Source([a], refetch_min_s=0.3)
    await source.refresh()
    strangers = [TokenSigner(Ed25519PrivateKey.generate()).issue("eve@example.com")[0] for _ in range(50)]

    started = time.monotonic()
    results = await asyncio.gather(*(source.verify(t) for t in strangers), return_exceptions=True)

    assert all(isinstance(r, TokenError) and r.reason == "unknown key" for r in results)
    assert source.fetches == 2  # the first one, and one for all fifty
    assert time.monotonic() - started >= 0.25  # it waited for the allowed slot


async def test_a_new_key_is_accepted_even_right_after_another_fetch() -> None:
    a, b = TokenSigner(Ed25519PrivateKey.generate()), TokenSigner(Ed25519PrivateKey.generate())
    source = Source([a], refetch_min_s=0.2)
    await source.refresh()
    with pytest.raises(TokenError, match="unknown key"):
        await source.verify(b.issue("ada@example.com")[0])  # b is not published yet: this fetch finds nothing

    source.signers.append(b)  # b is published, within refetch_min_s of that fetch

    assert (await source.verify(b.issue("ada@example.com")[0])).kid == b.kid
    assert source.fetches == 3
