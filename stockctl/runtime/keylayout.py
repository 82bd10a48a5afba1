"""Bring the Redis data of an older instance into the hash-tagged key layout, once.

The keys gained hash tags so that a Redis Cluster can hold them (:mod:`stockctl.wire.names`).
An instance made before that still has its accounts, alerts, prices and views under the old
names; :func:`ensure_key_layout` renames each of them (RENAMENX keeps a key's value and TTL,
in place, so nothing is copied or lost) and then writes the layout marker. Every daemon runs
it when it connects, before it reads or writes anything else; a lock lets one of them do the
renames while the others wait for the marker. A crash part way is finished by the next start:
the renames are per key and the names of renamed keys are left alone.

A Redis Cluster is never in the old layout (the old one could not run on a cluster): there,
the marker is only written.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from stockctl.runtime.process import failpoint
from stockctl.wire import names

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("stockctl.keylayout")

LOCK_KEY = "stockctl:key-layout-lock"
LOCK_S = 60
"""How long one daemon may hold the renaming lock before another may take over."""

_PATTERNS = ("md:*", "ex:*", "auth:*", "alerts:*")


async def ensure_key_layout(r: aioredis.Redis, cluster: bool = False, lock_s: float = LOCK_S) -> int:
    """Rename what is left of the old layout; how many keys this call renamed.

    The lock lapses ``lock_s`` after it was taken: a daemon that died holding it (kill -9 part
    way through) delays the others by at most that long, and the next one finishes the renames.
    """
    from redis.exceptions import ResponseError  # here: connections imports this module eagerly

    if await r.get(names.KEY_LAYOUT_KEY) == names.KEY_LAYOUT.encode():
        return 0
    if cluster:
        await r.set(names.KEY_LAYOUT_KEY, names.KEY_LAYOUT)
        return 0
    while not await r.set(LOCK_KEY, "1", nx=True, px=int(lock_s * 1000)):
        await asyncio.sleep(0.1)  # another daemon is renaming: done once the marker is there
        if await r.get(names.KEY_LAYOUT_KEY) == names.KEY_LAYOUT.encode():
            return 0
    try:
        renamed = 0
        for pattern in _PATTERNS:
            async for raw in r.scan_iter(match=pattern, count=1000):
                key = raw.decode()
                new = names.legacy_key_renamed(key)
                if new is None:
                    continue
                try:
                    moved = await r.renamenx(key, new)
                except ResponseError:  # SCAN may name a key twice: renamed the first time
                    continue
                if moved:
                    renamed += 1
                    failpoint("keylayout.renamed")
                else:
                    log.error("not renaming %s: %s exists already; the old key is kept for you to merge", key, new)
        await r.set(names.KEY_LAYOUT_KEY, names.KEY_LAYOUT)
        if renamed:
            log.warning("moved %d Redis keys to the hash-tagged layout (Redis Cluster ready)", renamed)
        return renamed
    finally:
        await r.delete(LOCK_KEY)
