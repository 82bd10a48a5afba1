"""matching's leadership: one active daemon per market group, any number standing by.

The active daemon holds the group's lease (a :class:`~stockctl.runtime.leases.Lease`, key
``g.<group>`` of the ``matching-leases`` bucket, renewed every third of ``matching_lease_s``).
A standby takes the lease once it has lapsed, which is ``matching_lease_s`` after the active
daemon died or stalled.

A lease alone cannot stop a daemon that was paused past its lease and then resumes: it would
still publish what it had in hand. So each term is also written to ``EX_EVENTS``, on
``ex.term.<group>``, with JetStream's compare-and-set (``Nats-Expected-Last-Subject-Sequence``
of the term read just before), and every record the active daemon publishes carries its term
as a fence (``Nats-Expected-Last-Subject-Sequence`` with ``...-Subject: ex.term.<group>``):
JetStream stores the record only while the group's last term is still this daemon's. A new
leader writes its term *before* it reads where each market's records stop, so nothing an
older leader sends after that read is stored. A refused record raises :class:`Fenced`: the
old leader stops without answering (the new leader's replay answers those commands).

A term is written again (by compare-and-set on itself) every ``matching_term_renew_s`` so it
never ages out of the stream, and when the active daemon regains a lease that lapsed while
nobody else took it (a NATS outage longer than the lease): that write succeeds only if no
other daemon led in between, which is what makes the daemon's in-memory engine still current.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors

from stockctl.runtime.leases import Lease
from stockctl.wire import names

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

log = logging.getLogger("stockctl.matching")

WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code for a failed ``Nats-Expected-Last-*`` check."""
CLAIM_ATTEMPTS = 5
TERM_RETRY_ON = (nats.errors.Error, OSError, TimeoutError)
"""What a term write is retried after (NATS away, a stream without a leader); never :class:`Fenced`."""


class Fenced(Exception):
    """Another matching daemon leads this group now: this one must not publish anything more."""


class LeaseLost(Exception):
    """The lease lapsed before this daemon's term was written: it stands by again."""


def is_fenced(exc: BaseException) -> bool:
    """Whether a publish failed because its expected term is no longer the group's last one."""
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code == WRONG_LAST_SEQUENCE


class Leadership:
    """The lease and the term of one matching daemon in one market group."""

    def __init__(
        self, js: JetStreamContext, kv: KeyValue, me: str, lease_s: float, group: str = names.MATCHING_GROUP
    ) -> None:
        self.js, self.me, self.group = js, me, group
        self.lease = Lease(kv, f"g.{group}", me, lease_s)
        self.subject = names.term_subject(group)
        self.term = 0  # the EX_EVENTS sequence of this daemon's term; 0 before it leads
        self.term_written = 0.0  # time.monotonic() of that write

    @property
    def period(self) -> float:
        """How often the lease is renewed (or, standing by, tried)."""
        return self.lease.lease_s / 3

    def fence(self) -> dict[str, str]:
        """Headers that make JetStream refuse a record once another daemon has written a term."""
        return {
            "Nats-Expected-Last-Subject-Sequence": str(self.term),
            "Nats-Expected-Last-Subject-Sequence-Subject": self.subject,
        }

    async def claim(self) -> int:
        """Write a new term after whatever term is last (call it holding the lease); its seq."""
        for _ in range(CLAIM_ATTEMPTS):
            if not self.lease.holds():
                # Written without the lease, a term would fence the daemon that holds it now.
                raise LeaseLost(f"the lease of group {self.group} lapsed before this daemon's term was written")
            try:
                return await self._write(await self._last_term())
            except Fenced:
                continue  # a term was written between the read and the write: read again
        raise Fenced(f"could not write a term for group {self.group} in {CLAIM_ATTEMPTS} attempts")

    async def renew(self) -> int:
        """Write the term again after this daemon's own; :class:`Fenced` if another came between."""
        return await self._write(self.term)

    def renew_due(self, every_s: float) -> bool:
        return self.term > 0 and time.monotonic() - self.term_written >= every_s

    async def superseded(self) -> bool:
        """Whether a later term than this daemon's is stored (False if that cannot be read now)."""
        try:
            last = await self._last_term()
        except TERM_RETRY_ON:
            return False
        return self.term > 0 and last != self.term

    async def _last_term(self) -> int:
        """The stream sequence of the group's last term (0 before the first)."""
        try:
            return (await self.js.get_last_msg(names.EVENT_STREAM, self.subject)).seq or 0
        except nats.js.errors.NotFoundError:
            return 0

    async def taken_by_other(self) -> bool:
        """Whether another daemon holds the lease now (it may have led since this one's term)."""
        try:
            entry = await self.lease.kv.get(self.lease.key)
        except nats.js.errors.KeyNotFoundError:
            return False
        return entry.value is not None and entry.value != self.me.encode()

    async def _write(self, after: int) -> int:
        body = json.dumps({"member": self.me, "lease_revision": self.lease.revision, "at_ns": time.time_ns()})
        try:
            ack = await self.js.publish(
                self.subject,
                body.encode(),
                headers={"Nats-Expected-Last-Subject-Sequence": str(after)},
                timeout=max(0.5, self.period),  # not past the lease: a late write could fence a successor
            )
        except nats.js.errors.APIError as exc:
            if is_fenced(exc):
                raise Fenced(f"another matching daemon wrote a term for group {self.group} after seq {after}") from None
            raise
        self.term, self.term_written = ack.seq, time.monotonic()
        log.info("term %d of group %s is this daemon's (lease revision %d)", ack.seq, self.group, self.lease.revision)
        return ack.seq
