"""history: the history writer. Every tick of ``MD_TICKS`` into the history store, for as long
as ``STOCKCTL_HISTORY_RETENTION`` says.

Its own durable pull consumer (``history``) of the tick stream: it fetches up to
``history_batch`` ticks, stores them and their candles in one transaction
(:meth:`HistoryStore.write`), and only after the commit acks each of them. A crash before
the acks redelivers the batch (after ``ACK_WAIT_S``), which the store's ``(symbol, seq)``
key turns into a no-op: at-least-once delivery, exactly-once storage. A database outage
holds the batch (nothing acked, progress reported so it is not redelivered meanwhile) and
retries it. Acks are explicit, not AckAll: with AckAll the next run's first ack would also
acknowledge a batch that a crash left uncommitted, and those ticks would be lost.

A live feed's exact quantity (``Tick.qty``) is stored with its tick, in 1e-8 units, and summed
into the candles, so it outlives the tick stream's window.

Every ``history_prune_interval_s`` it deletes ticks and candles older than the retention;
ticks older than that arriving late are not stored at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AsyncExitStack

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from stockctl.history import HistoryStore, TickRow, open_store, retention_cutoff
from stockctl.marketdata.money import PriceError, to_units
from stockctl.runtime.connections import open_nats
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.process import failpoint
from stockctl.runtime.retry import Backoff, Stopped, retry
from stockctl.runtime.status import StateLog, StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.marketdata import tick_decoder
from stockctl.wire.streams import ensure_tick_stream

log = logging.getLogger("stockctl.history")

FETCH_WAIT_S = 0.5
FETCH_BACKOFF = Backoff(base=0.2, cap=1.0)
"""Between failed fetches while NATS reconnects (nats-py comes back by itself): short, so the
writer resumes soon after NATS does."""
ACK_WAIT_S = 10.0
"""How long a fetched, unacknowledged tick waits before JetStream delivers it again (a
crashed writer's batch comes back this long after it was fetched)."""


def rows_of(batch: list[Msg], status: StatusFile) -> list[TickRow]:
    """The batch's ticks as rows; malformed ones are counted and left out (acked with the batch)."""
    rows: list[TickRow] = []
    for msg in batch:
        try:
            tick = tick_decoder.decode(msg.data)
            qty = to_units(tick.qty, "quantity") if tick.qty else 0  # a live feed's exact quantity
            rows.append(TickRow(tick.symbol, tick.seq, tick.ts, to_units(tick.price), tick.volume, qty))
        except (msgspec.DecodeError, msgspec.ValidationError, PriceError) as exc:
            log.error("skipping malformed tick on %s: %s", msg.subject, exc)
            status.incr("malformed")
    return rows


class Writer:
    """Stores batches, retrying through database outages, and prunes."""

    def __init__(self, settings: Settings, store: HistoryStore, status: StatusFile, stop: asyncio.Event) -> None:
        self.s, self.store, self.status, self.stop = settings, store, status, stop
        self.retention_ns = settings.history_retention_ns
        self.db_state = StateLog(log, f"history store {store.where}")

    async def store_batch(self, batch: list[Msg]) -> bool:
        """Write the batch until it commits (True) or the daemon stops first (False: not acked)."""
        failpoint("history.before_commit")
        rows = rows_of(batch, self.status)
        cutoff = retention_cutoff(self.retention_ns)
        if cutoff is not None:
            kept = [r for r in rows if r.ts >= cutoff]
            self.status.incr("expired", len(rows) - len(kept))
            rows = kept

        async def held(exc: Exception, _attempt: int) -> None:  # the database is away or refusing
            self.db_state.set("failing", f"{exc.__class__.__name__}: {exc}; retrying the batch")
            self.status.incr("db_errors")
            for msg in batch:  # still ours: no redelivery to a second writer meanwhile
                with contextlib.suppress(Exception):
                    await msg.in_progress()

        try:
            new = await retry(lambda: asyncio.to_thread(self.store.write, rows), stop=self.stop, on_error=held)
        except Stopped:
            return False
        self.db_state.set("ok")
        self.status.incr("ticks", new)
        self.status.incr("duplicates", len(rows) - new)
        self.status.incr("batches")
        return True

    async def prune(self) -> None:
        cutoff = retention_cutoff(self.retention_ns)
        if cutoff is None:
            return
        try:
            deleted = await asyncio.to_thread(self.store.prune, cutoff)
        except Exception as exc:
            self.db_state.set("failing", f"{exc.__class__.__name__}: {exc}; pruning again later")
            return
        self.status.incr("pruned", deleted)
        if deleted:
            log.info("pruned %d ticks older than %s", deleted, self.s.history_retention)


class History(Daemon):
    """Opens the store and its pull consumer, then fetches, stores, acks, and prunes on schedule."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.writer: Writer | None = None
        self.psub: JetStreamContext.PullSubscription | None = None

    async def startup(self, stack: AsyncExitStack) -> None:
        s = self.settings
        nc = await open_nats(stack, self.ops, self.stop, log)
        store = await retry(lambda: asyncio.to_thread(open_store, s), stop=self.stop, what="history store", logger=log)
        stack.callback(store.close)
        writer = self.writer = Writer(s, store, self.status, self.stop)
        self.ops.check("store", lambda: writer.db_state.state in (None, "ok"))
        js = nc.jetstream()
        await retry(lambda: ensure_tick_stream(js, s), stop=self.stop, what="JetStream", logger=log)

        async def subscribe() -> JetStreamContext.PullSubscription:
            return await js.pull_subscribe(
                names.TICK_SUBJECTS,
                durable=names.HISTORY_DURABLE,
                stream=names.TICK_STREAM,
                config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.ALL,
                    max_ack_pending=s.history_batch * 4,
                    ack_wait=ACK_WAIT_S,
                ),
            )

        psub = self.psub = await retry(subscribe, stop=self.stop, what="history consumer", logger=log)

        async def unsubscribe() -> None:  # before the drain, which would wait on the pull subscription
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

        stack.push_async_callback(unsubscribe)
        self.batch_seconds = self.ops.histogram("batch_seconds", "Time to store and ack one batch of ticks")
        self.status.info |= {"store": store.where, "retention": s.history_retention}
        log.info("writing ticks to %s (retention %s)", store.where, s.history_retention)

    async def main_loop(self) -> None:
        writer = self.writer
        assert writer is not None
        next_prune = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() >= next_prune:
                await writer.prune()
                next_prune = time.monotonic() + self.settings.history_prune_interval_s
            batch = await retry(self.fetch, stop=self.stop, retry_on=nats.errors.Error, backoff=FETCH_BACKOFF)
            if not batch:
                continue
            started = time.perf_counter()
            if not await writer.store_batch(batch):
                break  # stopping with the batch unacked: the next run gets it again
            failpoint("history.after_commit")
            with contextlib.suppress(nats.errors.Error):  # a lost ack: redelivered, stored once anyway
                for msg in batch:
                    await msg.ack()
            self.batch_seconds.observe(time.perf_counter() - started)
            self.status.info["backlog"] = batch[-1].metadata.num_pending

    async def fetch(self) -> list[Msg]:
        """Up to ``history_batch`` ticks, or none if none come within :data:`FETCH_WAIT_S`."""
        assert self.psub is not None
        try:
            return await self.psub.fetch(self.settings.history_batch, timeout=FETCH_WAIT_S)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except nats.errors.Error as exc:  # reconnecting: retried after a short backoff
            log.debug("fetch failed: %s", exc)
            raise


DAEMON = History

if __name__ == "__main__":
    main("history", History)
