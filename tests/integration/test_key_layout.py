"""An instance made before hash tags keeps its data: the keys are renamed once, in place."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from argon2 import PasswordHasher

from stockctl.runtime.keylayout import LOCK_KEY, ensure_key_layout
from stockctl.runtime.process import FAILPOINT_EXIT
from stockctl.wire import names
from tests.support.stack import REPO, Daemon, Servers, make_settings

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"

LEGACY = {
    "md:quote:AAPL": ("hash", {"price": "101.5", "sseq": "7"}),
    "md:hist:AAPL": ("list", ["p1", "p2"]),
    "md:candles:BRK%2EB:1m": ("zset", {"c1": 1.0}),
    "ex:fills:old@example.com": ("list", ["f1"]),
    "ex:trades:TATA_INR": ("list", ["t1"]),
    "alerts:active": ("hash", {"1": "{}"}),
}


def _write_legacy(r: redis.Redis) -> None:
    for key, (kind, value) in LEGACY.items():
        if kind == "hash":
            r.hset(key, mapping=value)  # type: ignore[arg-type]
        elif kind == "list":
            r.rpush(key, *value)
        else:
            r.zadd(key, value)  # type: ignore[arg-type]
    r.set("auth:refresh:abc", "old@example.com", ex=600)


def test_old_keys_are_renamed_with_their_values_and_ttls_once(clean: Servers) -> None:
    # Arrange
    r = redis.Redis.from_url(clean.redis_url)
    _write_legacy(r)
    r.sadd(names.SYMBOLS_KEY, "AAPL")

    async def migrate() -> int:
        client = aioredis.Redis.from_url(clean.redis_url)
        try:
            return await ensure_key_layout(client)
        finally:
            await client.aclose()

    # Act
    first = asyncio.run(migrate())
    second = asyncio.run(migrate())

    # Assert: every old key moved, nothing of it left behind, and the second run does nothing
    assert (first, second) == (len(LEGACY) + 1, 0)
    assert r.hgetall(names.quote_key("AAPL")) == {b"price": b"101.5", b"sseq": b"7"}
    assert r.lrange(names.history_key("AAPL"), 0, -1) == [b"p1", b"p2"]
    assert r.zrange(names.candles_key("BRK.B", "1m"), 0, -1) == [b"c1"]
    assert r.lrange(names.fills_key("old@example.com"), 0, -1) == [b"f1"]
    assert r.lrange(names.trades_key("TATA_INR"), 0, -1) == [b"t1"]
    assert r.hgetall(names.ALERTS_ACTIVE_KEY) == {b"1": b"{}"}
    assert 0 < r.ttl(names.refresh_key("abc")) <= 600
    assert not any(r.exists(key) for key in LEGACY)
    assert r.smembers(names.SYMBOLS_KEY) == {b"AAPL"}  # untagged keys keep their names
    assert r.get(names.KEY_LAYOUT_KEY) == names.KEY_LAYOUT.encode()


CRASHING_RENAMER = """
import asyncio, sys
import redis.asyncio as aioredis
from stockctl.runtime.keylayout import ensure_key_layout

async def main() -> None:
    await ensure_key_layout(aioredis.Redis.from_url(sys.argv[1]), lock_s=float(sys.argv[2]))

asyncio.run(main())
"""


def test_a_renamer_killed_holding_the_lock_delays_the_next_only_until_the_lock_lapses(clean: Servers) -> None:
    """Two daemons in a row die (exit 86, as kill -9) right after their first rename, each
    leaving the lock behind; the third start waits out the second's lock and finishes."""
    r = redis.Redis.from_url(clean.redis_url)
    _write_legacy(r)
    lock_s = 1.0
    env = {**os.environ, "STOCKCTL_FAILPOINTS": "keylayout.renamed"}
    for _ in (1, 2):  # the second starts while the first's lock holds: it waits that out, then dies too
        proc = subprocess.run(
            [sys.executable, "-c", CRASHING_RENAMER, clean.redis_url, str(lock_s)], env=env, cwd=REPO, timeout=30
        )
        assert proc.returncode == FAILPOINT_EXIT
        assert 0 < r.pttl(LOCK_KEY) <= lock_s * 1000  # left behind, lapsing
    old = [*LEGACY, "auth:refresh:abc"]
    assert sum(r.exists(key) for key in old) == len(old) - 2

    async def finish() -> int:
        client = aioredis.Redis.from_url(clean.redis_url)
        try:
            return await ensure_key_layout(client, lock_s=lock_s)
        finally:
            await client.aclose()

    assert asyncio.run(finish()) == len(old) - 2  # the two dead renamers moved one key each
    assert not any(r.exists(key) for key in old)
    assert r.get(names.KEY_LAYOUT_KEY) == names.KEY_LAYOUT.encode()
    assert not r.exists(LOCK_KEY)


def test_an_account_made_before_hash_tags_still_logs_in(
    clean: Servers, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange: the account as the old layout stored it
    r = redis.Redis.from_url(clean.redis_url)
    email = "veteran@example.com"
    r.hset(
        f"auth:user:{email}",
        mapping={"email": email, "hash": PasswordHasher().hash(PASSWORD), "created": "1700000000", "disabled": "0"},
    )
    r.sadd("auth:users", email)
    settings = make_settings(clean, tmp_path / "home")

    # Act
    daemons("auth", settings)
    resp = httpx.post(
        f"http://{settings.host}:{settings.auth_port}/auth/login",
        json={"email": email, "password": PASSWORD},
        timeout=10,
    )

    # Assert
    assert resp.status_code == 200, resp.text
    assert resp.json()["access_token"]
    assert r.sismember(names.USERS_KEY, email) and not r.exists("auth:users")
