"""Partition leases in NATS KV: each partition has at most one owner among the processors.

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


async def open_bucket(js: JetStreamContext, lease_s: float, replicas: int) -> KeyValue:
    """The leases bucket, created if missing (its ttl is the lease time)."""
    try:
        return await js.key_value(names.LEASES_BUCKET)
    except BucketNotFoundError:
        config = api.KeyValueConfig(bucket=names.LEASES_BUCKET, ttl=lease_s, history=1, replicas=replicas)
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
        try:
            revision = await self.kv.update(f"p{partition}", self.me.encode(), last=self.held[partition].revision)
        except KeyWrongLastSequenceError:
            # Expired (this processor stalled) and maybe taken: it is not ours any more.
            log.warning("lost partition %d: its lease expired before it was renewed", partition)
            self.held.pop(partition, None)
            return
        self.held[partition] = Held(revision, sent + self.lease_s * (1 - MARGIN))

    async def _take(self, partition: int) -> None:
        sent = time.monotonic()
        key = f"p{partition}"
        try:
            revision = await self.kv.create(key, self.me.encode())
        except KeyWrongLastSequenceError:
            # Held. By this very processor before a restart in place (same id)? Then it is ours
            # to take back now rather than after the lease time: nobody else can hold it.
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                return  # expired meanwhile: the next step takes it
            if entry.value != self.me.encode() or entry.revision is None:
                return  # another processor holds it
            try:
                revision = await self.kv.update(key, self.me.encode(), last=entry.revision)
            except KeyWrongLastSequenceError:
                return
        self.held[partition] = Held(revision, sent + self.lease_s * (1 - MARGIN))
        log.info("took partition %d", partition)
