"""publisher: simulated (GBM) or replayed (CSV) ticks onto JetStream ``md.tick.<SYM>``.

Each tick carries a per-symbol sequence number that continues across restarts (read
back from the stream) and a ``Nats-Msg-Id`` of ``<SYM>:<seq>``, so a publish retried
after a NATS outage is stored once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from contextlib import AsyncExitStack

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from stockctl.marketdata.gbm import make_walks
from stockctl.marketdata.money import from_units, to_units
from stockctl.marketdata.replay import ReplayError, read_rows, validate
from stockctl.runtime.connections import open_nats
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.retry import STREAM_BACKOFF, Stopped, pause, retry
from stockctl.runtime.status import StateLog, StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.marketdata import Tick, encode, tick_decoder
from stockctl.wire.streams import ensure_tick_stream, last_tick_msg

log = logging.getLogger("stockctl.publisher")

EXIT_CONFIG = 78  # EX_CONFIG: the supervisor does not restart a daemon that exits with this
MSG_ID = "Nats-Msg-Id"
SHUTDOWN_GRACE_S = 5.0
ACK_WAIT_S = 3.0
"""A tick not acknowledged this long after it was sent is sent again (the stream de-duplicates).
A publish that a stream leader took and then lost (it stepped down before a quorum stored it)
is never answered: this bounds the hole it leaves, well inside the processor's wait for a gap
(``GAP_GRACE_S``). Counting 100 newer publishes instead left a hole of 10 s at 20 ticks/s, and
of minutes at a low rate."""
"""How long a stopping publisher keeps resending unconfirmed ticks to an absent NATS."""


class TickPublisher:
    """Pipelined JetStream publishes with in-order retry of anything unconfirmed."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        stop: asyncio.Event,
        status: StatusFile,
        partitions: int,
        window: int = 2000,
    ) -> None:
        self._nc, self._js, self._stop, self._status = nc, js, stop, status
        self._partitions = partitions
        self._window = window
        # (ack future or None to resend, subject, payload, headers, monotonic time first sent)
        self._pending: deque[tuple[asyncio.Future | None, str, bytes, dict[str, str], float]] = deque()
        self._state = StateLog(log, "JetStream publish")
        self._resend = False

    def reconnected(self) -> None:
        """After a reconnect, resend what is unconfirmed, in order, before anything new.

        A tick written just before the server went away may be lost while the ones
        buffered after it are delivered; resending at once keeps the gap short and
        the processor waits for the missing tick instead of skipping it.
        """
        self._resend = True
        self._abandon_futures()

    def _abandon_futures(self) -> None:
        """Cancel the acks still awaited: a lost publish's ack never comes, and until its
        future is done it holds one of nats-py's ``publish_async_max_pending`` permits
        (4,000 leaked permits stall every later publish). What they covered is resent."""
        for i, (fut, subject, payload, headers, sent) in enumerate(self._pending):
            if fut is not None and not fut.done():
                fut.cancel()
                self._pending[i] = (None, subject, payload, headers, sent)

    async def publish(self, tick: Tick) -> None:
        if self._resend and self._nc.is_connected:
            self._resend = False
            await self._republish_all()
        subject = names.tick_subject(tick.symbol, self._partitions)
        payload = encode(tick)
        headers = {MSG_ID: f"{tick.symbol}:{tick.seq}"}
        fut: asyncio.Future | None = None
        if self._nc.is_connected and not self._resend:
            # Not while disconnected: nats-py would buffer it and flush it on reconnect,
            # ahead of the resend of what the old server lost, out of order.
            try:
                fut = await self._js.publish_async(subject, payload, headers=headers, wait_stall=5.0)
                fut.add_done_callback(_retrieve)
            except Exception:
                fut = None
        else:
            self._resend = True
        self._pending.append((fut, subject, payload, headers, time.monotonic()))
        self._status.incr("ticks")
        if len(self._pending) >= self._window:
            await self.confirm(len(self._pending) // 2)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def overdue(self) -> int:
        """How many of the oldest publishes were sent more than :data:`ACK_WAIT_S` ago."""
        cutoff = time.monotonic() - ACK_WAIT_S
        n = 0
        for *_, sent in self._pending:
            if sent > cutoff:
                break
            n += 1
        return n

    async def confirm(self, count: int | None = None) -> None:
        """Wait for the oldest ``count`` (default all) publishes to be stored."""
        count = len(self._pending) if count is None else max(0, min(count, len(self._pending)))
        for _ in range(count):
            fut, *_, sent = self._pending[0]
            ok = False
            if fut is not None:
                try:
                    wait = max(0.05, sent + ACK_WAIT_S - time.monotonic())
                    await asyncio.wait_for(asyncio.shield(fut), wait)
                    ok = True
                except asyncio.CancelledError:
                    if not fut.cancelled():
                        raise  # this task is being cancelled, not the ack abandoned
                except Exception:
                    ok = False
            if not ok:
                self._abandon_futures()
                await self._republish_all()
                return
            self._pending.popleft()
        self._state.set("ok")

    async def _republish_all(self) -> None:
        """Publish everything unconfirmed again, in order; the stream de-duplicates by id.

        Retried for as long as an outage lasts; once the daemon is stopping, for at most
        :data:`SHUTDOWN_GRACE_S` more, and then what is left is dropped, loudly.
        """
        deadline: float | None = None
        while self._pending:
            _, subject, payload, headers, _ = self._pending[0]
            send = functools.partial(self._js.publish, subject, payload, headers=headers, timeout=2.0)
            if self._stop.is_set() and deadline is None:
                deadline = time.monotonic() + SHUTDOWN_GRACE_S
            try:
                await retry(
                    send,
                    stop=None if deadline else self._stop,
                    deadline=deadline,
                    on_error=self._failing,
                    backoff=STREAM_BACKOFF,
                )
            except Stopped:
                continue  # told to stop mid-outage: go on under the shutdown deadline
            except Exception:  # the deadline passed with NATS still away
                log.error("dropping %d unconfirmed ticks at shutdown", len(self._pending))
                self._pending.clear()
                return
            self._pending.popleft()
            self._state.set("ok")

    def _failing(self, exc: Exception, _attempt: int) -> None:
        self._state.set("failing", f"{exc.__class__.__name__}: {exc}; retrying")


def _retrieve(fut: asyncio.Future) -> None:
    """Mark a failed ack as seen: the tick it covered is resent, so the error is handled."""
    if not fut.cancelled():
        fut.exception()


async def resume_points(js: JetStreamContext, symbols: list[str], partitions: int) -> dict[str, Tick]:
    """The last stored tick of each symbol, so sequences and prices carry on after a restart
    (after an upgrade too: a stream from before partitions has it on the old subject)."""
    last: dict[str, Tick] = {}
    for sym in symbols:
        raw = await last_tick_msg(js, sym, partitions)
        if raw is not None:
            last[sym] = tick_decoder.decode(raw.data)
    return last


async def simulate(settings: Settings, pub: TickPublisher, stop: asyncio.Event, last: dict[str, Tick]) -> None:
    """GBM ticks at ``settings.rate`` per symbol, paced against the clock, not by sleeps alone."""
    symbols = settings.symbols
    walks = make_walks(
        symbols, settings.rate, settings.sim_speed, settings.seed, {s: to_units(t.price) for s, t in last.items()}
    )
    seqs = {s: (last[s].seq if s in last else 0) for s in symbols}
    limit = None if settings.publish_limit is None else settings.publish_limit * len(symbols)
    loop = asyncio.get_running_loop()
    # Symbols are spread evenly over each tick period instead of all at one instant: a
    # burst of every symbol at once reaches every WebSocket client at once and turns into
    # queueing delay at the gateway (p99 92 ms → 34 ms at 10k clients when spread).
    slot = 1.0 / (settings.rate * len(symbols))
    t0, slots = loop.time(), 0
    behind = StateLog(log, "pace")
    while not stop.is_set():
        now = loop.time()
        due = int((now - t0) / slot) + 1 - slots
        if due * slot > 1.0 + slot:
            # More than a second behind: skip ahead instead of bursting to catch up.
            behind.set("behind", f"skipping {due - 1} ticks; lower the rate")
            t0 = now - (slots - 1) * slot
            due = 1
        elif due > 0:
            behind.set("on time")
        for _ in range(max(due, 0)):
            sym = symbols[slots % len(symbols)]
            walk = walks[sym]
            seqs[sym] += 1
            await pub.publish(Tick(sym, from_units(walk.step()), time.time_ns(), seqs[sym], walk.volume()))
            slots += 1
            if limit is not None and slots >= limit:
                await pub.confirm()
                log.info("published %d ticks per symbol (limit reached)", settings.publish_limit)
                return
        # A bounded number in flight, none of them unanswered for long.
        await pub.confirm(max(pub.pending - 100, pub.overdue()))
        # Sleep at least 2 ms: at high rates several slots are published per wake-up
        # rather than waking the loop thousands of times a second.
        await pause(max(t0 + slots * slot - loop.time(), 0.002), stop)


async def replay(settings: Settings, pub: TickPublisher, stop: asyncio.Event, last: dict[str, Tick]) -> None:
    """Publish the CSV's rows at ``replay_speed`` times their original pace, resuming after a restart."""
    path = settings.replay_csv
    assert path is not None
    origin_prefix = f"csv:{path.name}:"
    done_line = max(
        (int(t.origin.rsplit(":", 1)[1]) for t in last.values() if t.origin.startswith(origin_prefix)),
        default=0,
    )
    if done_line:
        log.info("resuming replay of %s after line %d", path.name, done_line)
    seqs = {s: t.seq for s, t in last.items()}
    loop = asyncio.get_running_loop()
    start_wall = start_ts = None
    rows = 0
    for row in read_rows(path):
        if stop.is_set():
            break
        if row.line <= done_line:
            continue
        if start_ts is None:
            start_wall, start_ts = loop.time(), row.ts
        if settings.replay_speed > 0:
            delay = start_wall + (row.ts - start_ts) / 1e9 / settings.replay_speed - loop.time()
            if delay > 0:
                await pub.confirm()
                if await pause(delay, stop):
                    break
        seqs[row.symbol] = seqs.get(row.symbol, 0) + 1
        await pub.publish(
            Tick(row.symbol, from_units(row.units), row.ts, seqs[row.symbol], row.volume, f"{origin_prefix}{row.line}")
        )
        rows += 1
    await pub.confirm()
    log.info("replay of %s finished: %d rows published", path.name, rows)


class Publisher(Daemon):
    """Checks the CSV (if replaying), resumes each symbol's sequence, then publishes until done."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.pub: TickPublisher | None = None
        self.last: dict[str, Tick] = {}

    async def startup(self, stack: AsyncExitStack) -> None:
        s = self.settings
        if s.replay_csv is not None:
            try:
                count = validate(s.replay_csv)
            except ReplayError as exc:
                log.error("cannot replay: %s", exc)
                raise SystemExit(EXIT_CONFIG) from None
            log.info("replaying %s (%d rows) at speed %s", s.replay_csv, count, s.replay_speed)
        nc = await open_nats(stack, self.ops, self.stop, log, on_reconnect=self._reconnected)
        js = nc.jetstream(publish_async_max_pending=4000)

        async def setup() -> dict[str, Tick]:
            await ensure_tick_stream(js, s)
            return await resume_points(js, s.symbols, s.partitions)

        self.last = await retry(setup, stop=self.stop, what="JetStream", logger=log)
        self.pub = TickPublisher(nc, js, self.stop, self.status, s.partitions)
        self.status.info |= {
            "mode": "replay" if s.replay_csv else "simulate",
            "symbols": len(s.symbols),
            "rate": s.rate,
        }

    async def main_loop(self) -> None:
        assert self.pub is not None
        if self.settings.replay_csv is not None:
            await replay(self.settings, self.pub, self.stop, self.last)
        else:
            await simulate(self.settings, self.pub, self.stop, self.last)
        await self.stop.wait()  # finished publishing (limit or end of file): stay up until told to stop

    async def shutdown(self) -> None:
        if self.pub is not None:
            await self.pub.confirm()

    def _reconnected(self) -> None:
        if self.pub is not None:
            self.pub.reconnected()


DAEMON = Publisher

if __name__ == "__main__":
    main("publisher", Publisher)
