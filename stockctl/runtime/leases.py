"""Leases in NATS KV: each partition has at most one owner among the processors, and each
market group one active matching daemon (:class:`Lease`, one key, the same rules).

The bucket (:data:`~stockctl.wire.names.LEASES_BUCKET`) keeps each entry for the lease time
(its ``ttl``), so an entry not written again in that time is gone. A lease is the entry
``p<N>`` holding the owner's id: taken with ``create`` (only if no entry is there), kept with
``update`` at the revision last written (only if nobody else wrote since), handed back with a
``delete`` at that revision. A member entry ``m.<id>``, written at every step, tells each
processor how many share the partitions, so each takes a fair share (rounded up) and gives
back what is over it.

:meth:`Leases.step` does one round; the caller runs it every ``lease_s / 3``. A lease is
held only while :meth:`Leases.holds` says so: until ``lease_s`` minus a margin after the
write that last renewed it (measured from before that write was sent). The server keeps
the entry for ``lease_s`` after it stored the write, which is later, so a processor stops
trusting its lease before any other can take it. A processor that stalls longer finds on
its next step that its revision is gone, and gives the partition up.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nats.js import api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from stockctl.wire import names

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

log = logging.getLogger("stockctl.leases")

MARGIN = 0.2
"""Share of the lease time a holder gives up early, for clock rate and scheduling slack."""


def member_id(host: str, daemon: str, home: str) -> str:
    """A processor's id: the same after a restart in place (so it takes its leases straight
    back), different for processors of other homes or hosts. KV keys take ``[-_=.a-zA-Z0-9]``."""
    tag = f"{zlib.crc32(home.encode()):08x}"
    return re.sub(r"[^-_=a-zA-Z0-9]", "_", f"{host}-{daemon}-{tag}")


async def open_bucket(
    js: JetStreamContext, lease_s: float, replicas: int, bucket: str = names.LEASES_BUCKET
) -> KeyValue:
    """A leases bucket, created if missing (its ttl is the lease time)."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        config = api.KeyValueConfig(bucket=bucket, ttl=lease_s, history=1, replicas=replicas)
        return await js.create_key_value(config)


@dataclass
class Held:
    revision: int
    valid_until: float  # time.monotonic()


@dataclass
class Leases:
    """One processor's view of the partitions it owns."""

    kv: KeyValue
    me: str
    partitions: int
    lease_s: float
    held: dict[int, Held] = field(default_factory=dict)
    members: int = 1

    def holds(self, partition: int) -> bool:
        lease = self.held.get(partition)
        return lease is not None and time.monotonic() < lease.valid_until

    def owned(self) -> list[int]:
        return sorted(p for p in self.held if self.holds(p))

    async def step(self) -> tuple[set[int], set[int]]:
        """Renew, give back, take: (partitions gained, partitions lost) in this round."""
        before = set(self.owned())
        await self._heartbeat()
        for p in list(self.held):
            await self._renew(p)
        share = math.ceil(self.partitions / max(self.members, 1))
        for p in sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]:
            await self.release(p)  # over the fair share: another processor is waiting for work
        if len(self.held) < share:
            start = sum(map(ord, self.me)) % self.partitions  # members start apart, fewer races
            for i in range(self.partitions):
                p = (start + i) % self.partitions
                if len(self.held) >= share:
                    break
                if p not in self.held:
                    await self._take(p)
        after = set(self.owned())
        return after - before, before - after

    async def release_all(self) -> None:
        """On the way out: hand every partition over now, not after the lease time."""
        for p in list(self.held):
            await self.release(p)
        try:
            await self.kv.delete(self._member_key)
        except Exception as exc:  # gone with the server: the entry expires anyway
            log.debug("member entry not deleted: %s", exc)

    async def release(self, partition: int) -> None:
        lease = self.held.pop(partition)
        with contextlib.suppress(KeyWrongLastSequenceError):  # taken over already
            await self.kv.delete(f"p{partition}", last=lease.revision)
        log.info("gave back partition %d", partition)

    @property
    def _member_key(self) -> str:
        return f"m.{self.me}"

    async def _heartbeat(self) -> None:
        await self.kv.put(self._member_key, b"1")
        try:
            self.members = max(1, len(await self.kv.keys(filters=["m."])))  # a substring match
        except NoKeysError:
            self.members = 1

    async def _renew(self, partition: int) -> None:
        sent = time.monotonic()
        revision = await _update(self.kv, f"p{partition}", self.me, self.held[partition].revision)
        if revision is None:
            # Expired (this processor stalled) and maybe taken: it is not ours any more.
            log.warning("lost partition %d: its lease expired before it was renewed", partition)
            self.held.pop(partition, None)
            return
        self.held[partition] = Held(revision, sent + self.lease_s * (1 - MARGIN))

    async def _take(self, partition: int) -> None:
        sent = time.monotonic()
        revision = await _create(self.kv, f"p{partition}", self.me)
        if revision is not None:
            self.held[partition] = Held(revision, sent + self.lease_s * (1 - MARGIN))
            log.info("took partition %d", partition)


@dataclass
class Lease:
    """One lease, ``key``: the active matching daemon's hold on its market group, say."""

    kv: KeyValue
    key: str
    me: str
    lease_s: float
    held: Held | None = None

    def holds(self) -> bool:
        return self.held is not None and time.monotonic() < self.held.valid_until

    @property
    def revision(self) -> int:
        """The revision of the write that last took or renewed it (0 if not held)."""
        return self.held.revision if self.held else 0

    async def step(self) -> bool:
        """Renew the lease if held, else try to take it; whether it is held now."""
        sent = time.monotonic()
        if self.held is None:
            revision = await _create(self.kv, self.key, self.me)
        else:
            revision = await _update(self.kv, self.key, self.me, self.held.revision)
            if revision is None:
                log.warning("lost lease %s: it expired before it was renewed", self.key)
        self.held = None if revision is None else Held(revision, sent + self.lease_s * (1 - MARGIN))
        return self.holds()

    async def release(self) -> None:
        """Hand it over now, not after the lease time (on the way out)."""
        held, self.held = self.held, None
        if held is not None:
            with contextlib.suppress(KeyWrongLastSequenceError):  # taken over already
                await self.kv.delete(self.key, last=held.revision)


async def _update(kv: KeyValue, key: str, me: str, last: int) -> int | None:
    """Renew ``key`` at revision ``last``: its new revision, or None if it expired meanwhile."""
    try:
        return await kv.update(key, me.encode(), last=last)
    except KeyWrongLastSequenceError:
        return None


async def _create(kv: KeyValue, key: str, me: str) -> int | None:
    """Take ``key`` if nobody holds it: its revision, or None if another member holds it."""
    try:
        return await kv.create(key, me.encode())
    except KeyWrongLastSequenceError:
        pass
    # Held. By this very member before a restart in place (same id)? Then it is ours to take
    # back now rather than after the lease time: nobody else can hold it.
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None  # expired meanwhile: the next step takes it
    if entry.value != me.encode() or entry.revision is None:
        return None  # another member holds it
    return await _update(kv, key, me, entry.revision)
