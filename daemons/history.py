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
from nats.js import api

from stockctl.history import HistoryStore, TickRow, open_store, retention_cutoff
from stockctl.marketdata.money import PriceError, to_units
from stockctl.runtime.connections import open_nats
from stockctl.runtime.daemon import main, shutdown_event
from stockctl.runtime.ops import start_ops
from stockctl.runtime.process import failpoint
from stockctl.runtime.retry import backoff_sleep, until_ready
from stockctl.runtime.service import ensure_tick_stream
from stockctl.runtime.status import StateLog, StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.marketdata import tick_decoder

log = logging.getLogger("stockctl.history")

FETCH_WAIT_S = 0.5
ACK_WAIT_S = 10.0
"""How long a fetched, unacknowledged tick waits before JetStream delivers it again (a
crashed writer's batch comes back this long after it was fetched)."""


def rows_of(batch: list[Msg], status: StatusFile) -> list[TickRow]:
    """The batch's ticks as rows; malformed ones are counted and left out (acked with the batch)."""
    rows: list[TickRow] = []
    for msg in batch:
        try:
            tick = tick_decoder.decode(msg.data)
            rows.append(TickRow(tick.symbol, tick.seq, tick.ts, to_units(tick.price), tick.volume))
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
        attempt = 0
        while True:
            try:
                new = await asyncio.to_thread(self.store.write, rows)
                break
            except Exception as exc:  # the database is away or refusing: hold the batch
                self.db_state.set("failing", f"{exc.__class__.__name__}: {exc}; retrying the batch")
                self.status.incr("db_errors")
                for msg in batch:  # still ours: no redelivery to a second writer meanwhile
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
                await backoff_sleep(attempt, self.stop)
                attempt += 1
                if self.stop.is_set():
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


async def run(settings: Settings) -> None:
    stop = shutdown_event()
    status = StatusFile(settings, "history")
    async with AsyncExitStack() as stack:
        # --- startup ---------------------------------------------------------------
        ops = await start_ops(stack, settings, "history", status)
        nc = await open_nats(stack, ops, stop, log)
        if nc is None:
            return

        async def connect() -> HistoryStore:
            return await asyncio.to_thread(open_store, settings)

        store = await until_ready(stop, log, "history store", connect)
        if store is None:
            return
        stack.callback(store.close)
        writer = Writer(settings, store, status, stop)
        ops.check("store", lambda: writer.db_state.state in (None, "ok"))
        js = nc.jetstream()
        if await until_ready(stop, log, "JetStream", lambda: ensure_tick_stream(js, settings)) is None:
            return

        async def subscribe() -> object:
            return await js.pull_subscribe(
                names.TICK_SUBJECTS,
                durable=names.HISTORY_DURABLE,
                stream=names.TICK_STREAM,
                config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.ALL,
                    max_ack_pending=settings.history_batch * 4,
                    ack_wait=ACK_WAIT_S,
                ),
            )

        psub = await until_ready(stop, log, "history consumer", subscribe)
        if psub is None:
            return

        async def unsubscribe() -> None:  # before the drain, which would wait on the pull subscription
            with contextlib.suppress(Exception):
                await psub.unsubscribe()  # type: ignore[attr-defined]

        stack.push_async_callback(unsubscribe)
        status.ready = True
        status.info |= {"store": store.where, "retention": settings.history_retention}
        status_task = asyncio.create_task(status.run(stop))
        stack.callback(status.remove)
        log.info("writing ticks to %s (retention %s)", store.where, settings.history_retention)

        # --- main loop -------------------------------------------------------------
        batch_seconds = ops.histogram("batch_seconds", "Time to store and ack one batch of ticks")
        next_prune = time.monotonic()
        while not stop.is_set():
            if time.monotonic() >= next_prune:
                await writer.prune()
                next_prune = time.monotonic() + settings.history_prune_interval_s
            try:
                batch = await psub.fetch(settings.history_batch, timeout=FETCH_WAIT_S)  # type: ignore[attr-defined]
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as exc:  # reconnecting: nats-py comes back by itself
                log.debug("fetch failed: %s", exc)
                await backoff_sleep(1, stop)
                continue
            if not batch:
                continue
            started = time.perf_counter()
            if not await writer.store_batch(batch):
                break  # stopping with the batch unacked: the next run gets it again
            failpoint("history.after_commit")
            with contextlib.suppress(nats.errors.Error):  # a lost ack: redelivered, stored once anyway
                for msg in batch:
                    await msg.ack()
            batch_seconds.observe(time.perf_counter() - started)
            status.info["backlog"] = batch[-1].metadata.num_pending

        # --- shutdown --------------------------------------------------------------
        await status_task


if __name__ == "__main__":
    main("history", run)
