"""matching's engine snapshots in Redis: the state, and the command sequence it includes.

The group's :func:`~stockctl.wire.names.snapshot_key` holds the engine's serialised state
(``data``) and ``cmd_seq``, the last ``EX_ORDERS`` sequence applied to it. A start restores
it and replays the commands after ``cmd_seq``; without a snapshot it replays the whole stream. A snapshot is a shortcut,
never the record: one that is not written (Redis away) costs a longer replay, nothing else.

One is due every ``SNAPSHOT_EVERY_S`` or ``SNAPSHOT_EVERY_CMDS`` commands, whichever comes
first, and at shutdown; the caller decides whether the state is complete enough to take it
(every event it covers stored and derived).
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockctl.exchange.engine import Exchange
from stockctl.exchange.groups import Group, MarketGroups
from stockctl.runtime.status import StatusFile
from stockctl.wire import names
from stockctl.wire.exchange import MarketSpec

log = logging.getLogger("stockctl.matching")

SNAPSHOT_EVERY_S = 5.0
SNAPSHOT_EVERY_CMDS = 20_000


class SnapshotUnusable(Exception):
    """The stored snapshot cannot serve this configuration: an operator must choose."""


class Snapshots:
    """Reads the snapshot at start; writes one when due."""

    def __init__(self, r: aioredis.Redis, status: StatusFile, groups: MarketGroups, group: Group) -> None:
        self.r, self.status = r, status
        self.key = names.snapshot_key(group.name)
        self.id_step, self.accounts_market = groups.id_step, group.accounts_market
        self.taken_at = (time.monotonic(), 0)  # (when, cmd_seq) of the last snapshot written or restored

    async def load(self, specs: tuple[MarketSpec, ...], newer_than: int = 0) -> tuple[Exchange, int] | None:
        """The restored engine and its command sequence, or None without a snapshot (or
        without one past ``newer_than``: its command sequence is read first, alone).

        Raises :class:`SnapshotUnusable` if another stockctl version wrote it, or for other
        markets than ``specs``: markets cannot change under a running exchange.
        """
        if newer_than and int(await self.r.hget(self.key, "cmd_seq") or 0) <= newer_than:
            return None
        raw = await self.r.hgetall(self.key)
        if not raw:
            return None
        try:
            engine = Exchange.restore(raw[b"data"], self.id_step, self.accounts_market)
        except ValueError as exc:
            raise SnapshotUnusable(
                f"the exchange snapshot in Redis cannot be restored ({exc}); run the stockctl that wrote it,"
                " or start a fresh exchange"
            ) from None
        if tuple(engine.markets) != tuple(specs):
            raise SnapshotUnusable(
                "the configured markets differ from the exchange's snapshot; markets cannot change under"
                " a running exchange: restore the old markets file, or start a fresh exchange"
            )
        return engine, int(raw[b"cmd_seq"])

    def mark(self, cmd_seq: int) -> None:
        """Count time and commands towards the next snapshot from now and ``cmd_seq``."""
        self.taken_at = (time.monotonic(), cmd_seq)

    def due(self, cmd_seq: int, force: bool = False) -> bool:
        """Whether commands were applied since the last snapshot and one is due (or forced)."""
        at, cmds = self.taken_at
        if cmd_seq == cmds:
            return False
        return force or time.monotonic() - at >= SNAPSHOT_EVERY_S or cmd_seq - cmds >= SNAPSHOT_EVERY_CMDS

    async def take(self, engine: Exchange, cmd_seq: int) -> None:
        """Write the engine's state at ``cmd_seq``; a Redis failure is logged, not raised."""
        try:
            await self.r.hset(self.key, mapping={"data": engine.snapshot(), "cmd_seq": cmd_seq})
        except RedisError as exc:
            log.warning("snapshot not written (%s); the command log still has everything", exc)
            return
        self.mark(cmd_seq)
        self.status.incr("snapshots")
