"""processor: ticks in, latest price / history / candles / SMA signals out.

A durable JetStream pull consumer per partition of ``md.tick.<P>.>`` it holds the lease of,
with pull requests kept outstanding (:mod:`stockctl.runtime.pull`). Each batch of ticks (whatever has arrived,
up to ``processor_batch``) becomes one Redis MULTI/EXEC transaction (quote hash, history
list, candle sets, signal list, and the per-symbol tick and stream sequences used for
dedup), sent in one round trip on a connection that never re-sends it by itself; only
after EXEC succeeds are the batch's ticks acknowledged and its quotes and signals
published on core NATS, all of them handed to nats-py as one write
(:mod:`stockctl.runtime.natsout`). A crash between EXEC and ack leads to redelivery, which
the stored sequences turn into a no-op; a crash before EXEC leaves a gap that the next run
reads back from the stream. So nothing is lost or counted twice: the failpoints
``processor.before_commit`` and ``processor.after_commit`` crash at those two moments in
the tests.

Each tick is also published on ``stock_prices`` as seed 000's ``StockPrice`` JSON
(:mod:`stockctl.seeds`), spliced from the quote's own text: no second encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import msgspec
import nats.errors
import nats.js.errors
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api
from redis.exceptions import RedisError

from stockctl.marketdata.candles import CandleState
from stockctl.marketdata.processing import Applied, SymbolState, Verdict, candle_of
from stockctl.runtime.connections import open_nats, open_redis, redis_client
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.leases import Leases, member_id, open_bucket
from stockctl.runtime.natsout import Frames, send_frames
from stockctl.runtime.process import failpoint
from stockctl.runtime.pull import Feed
from stockctl.runtime.retry import STREAM_BACKOFF, Stopped, retry
from stockctl.runtime.scripts import Call, Lua, run_scripts
from stockctl.runtime.status import StateLog, StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.marketdata import Tick, candle_decoder, encode, point_decoder, tick_decoder
from stockctl.wire.seeds import STOCK_PRICES_SUBJECT, stock_price
from stockctl.wire.streams import STREAM_UNAVAILABLE, ensure_tick_stream

log = logging.getLogger("stockctl.processor")

# A symbol's subjects are validated and escaped once per process, not once per tick.
_quote_subject = functools.lru_cache(maxsize=65_536)(names.quote_subject)
_signal_subject = functools.lru_cache(maxsize=65_536)(names.signal_subject)

_V1_ACK_TOKENS = 9
"""``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``; longer is the v2 form."""


def stream_seq(msg: Msg) -> int:
    """The message's stream sequence, read straight from its reply subject.

    What ``msg.metadata.sequence.stream`` gives, without building the whole metadata object
    (a datetime among it) for every tick.
    """
    tokens = msg.reply.split(".")
    return int(tokens[5] if len(tokens) == _V1_ACK_TOKENS else tokens[Msg.Ack.StreamSeq])


def num_pending(msg: Msg) -> int:
    """What the consumer had left to deliver after this message: the reply subject's last token
    in both forms (what ``msg.metadata.num_pending`` gives, without the whole metadata)."""
    tokens = msg.reply.split(".")
    return int(tokens[8] if len(tokens) == _V1_ACK_TOKENS else tokens[Msg.Ack.NumPending])


GAP_GRACE_S = 15.0
"""How long a missing tick may still turn up (a publisher retrying after a NATS outage
publishes it behind newer ones) before the processor gives up on it and moves on."""


@dataclass
class Early:
    """A tick that arrived before one it follows: kept unacked until its turn comes.

    Kept in memory rather than nak'd for redelivery: after a NATS restart the missing
    tick can be stored hundreds of messages later, and nak'd ticks come back out of
    order again, so a redelivery loop never settles. Unacked, they are redelivered to
    the next run if this one dies, so nothing is lost.
    """

    tick: Tick
    sseq: int
    msgs: list[Msg]


@dataclass
class Plan:
    """The Redis writes and NATS publishes one batch of ticks adds up to."""

    touched: dict[str, SymbolState] = field(default_factory=dict)
    new_symbols: set[str] = field(default_factory=set)
    points: dict[str, list[bytes]] = field(default_factory=dict)
    candles: dict[tuple[str, str], dict[int, CandleState]] = field(default_factory=dict)
    """The builders' own candle objects: they hold the bucket's final state by commit time."""
    signals: dict[str, list[bytes]] = field(default_factory=dict)
    outbox: list[tuple[str, bytes]] = field(default_factory=list)
    encoded: dict[tuple[str, str], dict[int, bytes]] = field(default_factory=dict)
    kept: set[int] = field(default_factory=set)
    """``id()`` of the messages held back in the reorder buffer: not acked by this batch."""
    released: list[Msg] = field(default_factory=list)
    """Messages of earlier batches applied by this one, from the reorder buffer: acked with it."""
    before: dict[str, int] = field(default_factory=dict)
    """Per touched symbol, its stream seq as Redis holds it before this batch: the commit's fence."""

    def apply(self, state: SymbolState, tick: Tick, sseq: int) -> None:
        self.before.setdefault(state.symbol, state.last_sseq)
        self.add(state, state.apply(tick, sseq))

    def release(self, msgs: list[Msg]) -> None:
        """Held messages are applied now: ack them with this batch, wherever they arrived."""
        for m in msgs:
            if id(m) in self.kept:
                self.kept.discard(id(m))
            else:
                self.released.append(m)

    def add(self, state: SymbolState, applied: Applied) -> None:
        sym = state.symbol
        self.touched[sym] = state
        self.points.setdefault(sym, []).append(encode(applied.point))
        for iv, candle in applied.candles:
            # Encoded once at commit, not per tick: later ticks of the bucket mutate it.
            self.candles.setdefault((sym, iv), {})[candle.start] = candle
        self.outbox.append((_quote_subject(sym), encode(applied.quote)))
        q = applied.quote  # seed 000's clients read every tick on `stock_prices`
        self.outbox.append((STOCK_PRICES_SUBJECT, stock_price(sym, q.price, q.ts)))
        if applied.signal is not None:
            data = encode(applied.signal)
            self.signals.setdefault(sym, []).append(data)
            self.outbox.append((_signal_subject(sym), data))

    def encoded_candles(self) -> dict[tuple[str, str], dict[int, bytes]]:
        return {
            (sym, iv): {start: encode(candle_of(sym, iv, c)) for start, c in by_start.items()}
            for (sym, iv), by_start in self.candles.items()
        }


# KEYS: quote hash, history list, signal list, then one candle set per interval.
# ARGV: the stream seq the quote hash must hold (else nothing is written: 0), the history,
# signal and candle limits; then counted sections: quote fields (n, then field/value pairs),
# history points, signals, and for each candle set its candles (n, then score/JSON pairs).
COMMIT_SYMBOL = Lua("""
if (redis.call('HGET', KEYS[1], 'sseq') or '0') ~= ARGV[1] then return 0 end
local function push(key, first, n, limit)
  local last = first + n - 1
  while first <= last do
    local upto = math.min(first + 999, last)
    redis.call('RPUSH', key, unpack(ARGV, first, upto))
    first = upto + 1
  end
  if n > 0 then redis.call('LTRIM', key, -limit, -1) end
end
local at = 5
local n = tonumber(ARGV[at])
redis.call('HSET', KEYS[1], unpack(ARGV, at + 1, at + 2 * n))
at = at + 2 * n + 1
n = tonumber(ARGV[at])
push(KEYS[2], at + 1, n, tonumber(ARGV[2]))
at = at + n + 1
n = tonumber(ARGV[at])
push(KEYS[3], at + 1, n, tonumber(ARGV[3]))
at = at + n + 1
for k = 4, #KEYS do
  n = tonumber(ARGV[at])
  for i = at + 1, at + 2 * n, 2 do
    redis.call('ZREMRANGEBYSCORE', KEYS[k], ARGV[i], ARGV[i])
    redis.call('ZADD', KEYS[k], ARGV[i], ARGV[i + 1])
  end
  if n > 0 then redis.call('ZREMRANGEBYRANK', KEYS[k], 0, -(tonumber(ARGV[4]) + 1)) end
  at = at + 2 * n + 1
end
return 1
""")


class StaleState(RedisError):
    """A symbol's stored state is not the one this processor planned from; reload it."""


class Processor:
    """Applies batches of tick messages to per-symbol state and commits them to Redis."""

    def __init__(
        self,
        settings: Settings,
        nc: NATS,
        js: JetStreamContext,
        r: aioredis.Redis,
        status: StatusFile,
        stop: asyncio.Event,
        commit_r: aioredis.Redis | None = None,
    ) -> None:
        self.s, self.nc, self.js, self.r = settings, nc, js, r
        self.commit_r = commit_r if commit_r is not None else r
        """Where batches are committed: a client that never re-sends a command by itself."""
        self.frames = Frames()
        self.status, self.stop = status, stop
        self.states: dict[str, SymbolState] = {}
        self.redis_state = StateLog(log, "Redis")
        self.gap_since: dict[str, float] = {}
        self.early: dict[str, dict[int, Early]] = {}
        """Per symbol, ticks that arrived before a missing one, by tick sequence."""

    # --- state ------------------------------------------------------------------------

    async def load(self, symbol: str) -> SymbolState:
        """Restore one symbol's state from Redis (empty state for a new symbol)."""
        s = self.s
        raw = await self.r.hgetall(names.quote_key(symbol))
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        history = [point_decoder.decode(b) for b in await self.r.lrange(names.history_key(symbol), 0, -1)]
        last_candles = {}
        for iv in s.candle_intervals:
            newest = await self.r.zrange(names.candles_key(symbol, iv), -1, -1)
            if newest:
                last_candles[iv] = candle_decoder.decode(newest[0])
        return SymbolState.restore(symbol, s.sma_fast, s.sma_slow, s.candle_intervals, fields, history, last_candles)

    def forget(self, which: Callable[[str], bool]) -> None:
        """Drop the state of the symbols ``which`` picks: read again from Redis at their next tick."""
        for sym in [sym for sym in self.states if which(sym)]:
            del self.states[sym]
            self.early.pop(sym, None)
            self.gap_since.pop(sym, None)

    async def restore_all(self) -> None:
        self.states.clear()
        for raw in await self.r.smembers(names.SYMBOLS_KEY):
            sym = raw.decode()
            self.states[sym] = await self.load(sym)

    async def check_stream_epoch(self, info: api.StreamInfo) -> None:
        """A recreated tick stream restarts stream sequences: forget the old dedup points."""
        epoch = info.created.isoformat() if info.created else str(info.config.name)
        stored = await self.r.get(names.STREAM_EPOCH_KEY)
        if stored is not None and stored.decode() != epoch:
            log.warning("tick stream was recreated; resetting dedup sequence numbers")
            # Per key (the symbols are in different cluster slots): the epoch is written last,
            # so a crash part way resets them all again at the next start.
            async with self.r.pipeline(transaction=False) as pipe:
                for sym in self.states:
                    pipe.hset(names.quote_key(sym), mapping={"seq": 0, "sseq": 0})
                await pipe.execute()
            for st in self.states.values():
                st.last_seq = st.last_sseq = 0
        await self.r.set(names.STREAM_EPOCH_KEY, epoch)

    # --- one batch --------------------------------------------------------------------

    async def handle(self, batch: list[Msg]) -> None:
        """Apply, commit, ack, publish. Retries the whole batch until Redis takes it.

        An empty batch still runs: it is how a gap that outlived its grace period is
        given up on in a quiet stream.
        """
        retried = False

        async def apply_and_commit() -> Plan:
            nonlocal retried
            if retried:  # in-memory state may be ahead of Redis after a failed commit: reload it
                with contextlib.suppress(RedisError):
                    await self.restore_all()
            retried = True
            # The reorder buffer is part of the state a failed commit rolls back.
            early = {sym: dict(b) for sym, b in self.early.items()}
            gap_since = dict(self.gap_since)
            try:
                plan = await self._plan(batch)
                if batch:
                    failpoint("processor.before_commit")
                await self._commit(plan)
            except RedisError:
                self.early, self.gap_since = early, gap_since
                raise
            return plan

        try:
            plan = await retry(apply_and_commit, stop=self.stop, retry_on=RedisError, on_error=self._redis_failed)
        except Stopped:
            return  # not acked: redelivered to the next run
        if batch:
            failpoint("processor.after_commit")
        self.redis_state.set("ok")
        # Acks, then quotes, signals and candles: one buffer, one call into nats-py.
        out = self.frames
        for msg in plan.released:
            out.add_ack(msg.reply)
        kept = plan.kept
        for msg in batch:
            if id(msg) not in kept:
                out.add_ack(msg.reply)
        for subject, data in plan.outbox:
            out.add(subject, data)
        for (sym, iv), by_start in plan.encoded.items():
            out.add(names.candle_subject(sym, iv), by_start[max(by_start)])
        count = out.count
        try:
            await send_frames(self.nc, out.take(), count)
        except NatsError as exc:  # closed or draining (shutdown): unacked, so redelivered
            log.warning("acks and quotes of a committed batch not sent: %s", exc)
        if batch:
            self.status.incr("batches")
        self.status.info["early"] = sum(len(b) for b in self.early.values())

    def _redis_failed(self, exc: Exception, _attempt: int) -> None:
        self.redis_state.set("failing", f"{exc.__class__.__name__}: {exc}; retrying batch")
        self.status.incr("redis_errors")

    async def _plan(self, batch: list[Msg]) -> Plan:
        plan = Plan()
        for msg in batch:
            try:
                tick = tick_decoder.decode(msg.data)
            except msgspec.ValidationError as exc:
                log.error("dropping malformed tick on %s: %s", msg.subject, exc)
                self.status.incr("malformed")
                await msg.term()
                plan.kept.add(id(msg))  # terminated, not acked
                continue
            sseq = stream_seq(msg)
            state = self.states.get(tick.symbol)
            if state is None:
                state = self.states[tick.symbol] = await self.load(tick.symbol)
                plan.new_symbols.add(tick.symbol)
            verdict = state.classify(tick, sseq)
            if verdict is Verdict.GAP:
                if tick.symbol not in self.early:
                    await self._look_back(state, sseq)
                self._keep(tick, sseq, msg, plan)
                self._drain(state, plan)
                continue
            if verdict is Verdict.RESET:
                log.warning("%s: publisher restarted its sequence at 1", tick.symbol)
                self.early.pop(tick.symbol, None)
                verdict = Verdict.APPLY
            if verdict is Verdict.APPLY:
                self._apply(state, tick, sseq, plan)
            else:
                self.status.incr(verdict.value)
        self._give_up_on_old_gaps(plan)
        return plan

    def _keep(self, tick: Tick, sseq: int, msg: Msg, plan: Plan) -> None:
        """Hold a tick that is ahead of a missing one; a redelivery joins the one held."""
        held = self.early.setdefault(tick.symbol, {})
        if tick.seq in held:
            held[tick.seq].msgs.append(msg)
        else:
            held[tick.seq] = Early(tick, sseq, [msg])
        self.gap_since.setdefault(tick.symbol, time.monotonic())
        plan.kept.add(id(msg))
        self.status.incr("held")

    async def _look_back(self, state: SymbolState, sseq: int) -> None:
        """Once per gap: hold what the stream already has of it, earlier than this tick.

        Those are ticks delivered to a processor that died before acking them: the
        server redelivers them only after ``ack_wait``, so they are read directly.
        Their own redelivery later is a duplicate.
        """
        subject = names.tick_subject(state.symbol, self.s.partitions)
        cursor = state.last_sseq + 1
        held = self.early.setdefault(state.symbol, {})
        while cursor < sseq:
            try:
                # A stream between leaders answers 503 (or not at all) for a few seconds: wait
                # it out. Giving up would end the daemon; skipping would miss the held ticks.
                raw = await retry(
                    functools.partial(self.js.get_msg, names.TICK_STREAM, seq=cursor, subject=subject, next=True),
                    stop=self.stop,
                    backoff=STREAM_BACKOFF,
                    retry_on=STREAM_UNAVAILABLE,
                    what="the tick stream",
                    logger=log,
                )
            except nats.js.errors.NotFoundError:
                break
            if raw.seq is None or raw.seq >= sseq:
                break
            found = tick_decoder.decode(raw.data)
            if found.seq > state.last_seq and found.seq not in held:
                held[found.seq] = Early(found, raw.seq, [])
            cursor = raw.seq + 1

    def _apply(self, state: SymbolState, tick: Tick, sseq: int, plan: Plan) -> None:
        """Apply one tick, then every held tick that now follows on."""
        plan.apply(state, tick, sseq)
        self.status.incr("ticks")
        self._drain(state, plan, progressed=True)

    def _drain(self, state: SymbolState, plan: Plan, progressed: bool = False) -> None:
        """Apply the held ticks that follow on from the last applied one."""
        held = self.early.get(state.symbol)
        while held and state.last_seq + 1 in held:
            progressed = True
            nxt = held.pop(state.last_seq + 1)
            plan.apply(state, nxt.tick, nxt.sseq)
            self.status.incr("ticks")
            self.status.incr("gap_filled")
            plan.release(nxt.msgs)
        if held and progressed:
            # Still waiting for a later missing tick: its grace period starts now.
            for seq in [seq for seq in held if seq <= state.last_seq]:  # duplicates of what is applied
                plan.release(held.pop(seq).msgs)
            self.gap_since[state.symbol] = time.monotonic()
        if not held:
            self.early.pop(state.symbol, None)
            self.gap_since.pop(state.symbol, None)

    def _give_up_on_old_gaps(self, plan: Plan) -> None:
        """A gap that outlived :data:`GAP_GRACE_S`: those ticks are not coming; move on."""
        now = time.monotonic()
        for sym in [s for s, since in self.gap_since.items() if now - since >= GAP_GRACE_S]:
            held = self.early.get(sym)
            state = self.states[sym]
            if not held:
                self.gap_since.pop(sym, None)
                continue
            first = min(held)
            lost = first - state.last_seq - 1
            log.warning("%s: giving up on %d missing ticks before seq %d", sym, lost, first)
            self.status.incr("gap_lost", lost)
            nxt = held.pop(first)
            plan.release(nxt.msgs)
            self._apply(state, nxt.tick, nxt.sseq, plan)

    async def _commit(self, plan: Plan) -> None:
        if not plan.touched:
            return
        s = self.s
        if plan.new_symbols:
            # On its own, before the symbols' keys: a crash in between lists a symbol with no
            # price yet (readers say so), never a price that no listing leads to.
            await self.commit_r.sadd(names.SYMBOLS_KEY, *plan.new_symbols)
        plan.encoded = plan.encoded_candles()
        intervals = s.candle_intervals
        calls: list[Call] = []
        for sym, state in plan.touched.items():
            points = plan.points.get(sym, [])
            signals = plan.signals.get(sym, [])
            fields = state.quote_fields()
            args: list[str | int | bytes] = [plan.before[sym], s.history_limit, s.signal_limit, s.candle_limit]
            args.append(len(fields))
            for k, v in fields.items():
                args += [k, v]
            args += [len(points), *points, len(signals), *signals]
            for iv in intervals:
                by_start = plan.encoded.get((sym, iv), {})
                args.append(len(by_start))
                for start, data in by_start.items():
                    args += [start // 1_000_000_000, data]  # seconds: exact as a Redis double
            keys = [names.quote_key(sym), names.history_key(sym), names.signals_key(sym)]
            keys += [names.candles_key(sym, iv) for iv in intervals]
            calls.append(Call(COMMIT_SYMBOL, keys, args))
        # On the no-retry client: every script is fenced by the symbol's stored stream seq, so one
        # sent twice (a cluster client retrying across a failover) or a batch retried after a
        # partial commit writes each symbol's ticks once. A fenced-out symbol means Redis is not
        # what this process last wrote (a lost write on a failover): reload and plan again.
        results = await run_scripts(self.commit_r, calls)
        stale = [call.keys[0] for call, ok in zip(calls, results, strict=True) if not ok]
        if stale:
            raise StaleState(f"{len(stale)} symbols changed in Redis since they were read ({stale[0]}, ...)")


class ProcessorDaemon(Daemon):
    """Takes a fair share of the tick partitions by lease and applies each one's batches.

    The main loop runs :meth:`Leases.step` every third of the lease time; each partition it
    owns has a task keeping pull requests outstanding on that partition's durable consumer
    (:class:`~stockctl.runtime.pull.Feed`), whose ticks go straight into one inbox. All of them apply
    through one :class:`Processor` (one applier task: a batch at a time), whose per-symbol fence in
    Redis makes the commits of a processor that lost a partition without knowing it (it
    stalled past its lease) fail rather than write over the new owner's.
    """

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.proc: Processor | None = None
        self.leases: Leases | None = None
        self.js: JetStreamContext | None = None
        self.nc: NATS | None = None
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.inbox: asyncio.Queue[tuple[int, Msg]] = asyncio.Queue()
        """(partition, tick) as the partitions' fetch loops pull them; one applier takes them all."""
        self.backlog: dict[int, int] = {}

    async def startup(self, stack: AsyncExitStack) -> None:
        s = self.settings
        r = await open_redis(stack, self.ops, self.stop, log)
        nc = self.nc = await open_nats(stack, self.ops, self.stop, log)
        js = self.js = nc.jetstream()
        info = await retry(lambda: ensure_tick_stream(js, s), stop=self.stop, what="JetStream", logger=log)
        commit_r = redis_client(s, retries=0)
        stack.push_async_callback(commit_r.aclose)
        proc = self.proc = Processor(s, nc, js, r, self.status, self.stop, commit_r)
        await proc.restore_all()
        await proc.check_stream_epoch(info)
        log.info("restored %d symbols from Redis", len(proc.states))
        kv = await retry(
            lambda: open_bucket(js, s.processor_lease_s, s.stream_replicas), stop=self.stop, what="leases", logger=log
        )
        me = member_id(socket.gethostname(), self.name, str(s.home.resolve()))
        self.leases = Leases(kv, me, s.partitions, s.processor_lease_s)
        with contextlib.suppress(nats.js.errors.NotFoundError):  # the one consumer before partitions
            await js.delete_consumer(names.TICK_STREAM, names.PROCESSOR_DURABLE)
        stack.push_async_callback(self._hand_over)
        self.batch_seconds = self.ops.histogram("batch_seconds", "Time to apply and commit one batch of ticks")
        self.status.info |= {"symbols": len(proc.states), "partitions": [], "partitions_total": s.partitions}

    async def _apply(self) -> None:
        """Batches of whatever has arrived from every partition, up to ``processor_batch``: far
        bigger batches than one partition gives, and the ticks keep arriving while a batch is
        applied. Ticks of a partition whose lease lapsed meanwhile are left unacked
        (the next owner gets them)."""
        proc, leases, inbox = self.proc, self.leases, self.inbox
        assert proc is not None and leases is not None
        limit = self.settings.processor_batch
        while not self.stop.is_set():
            try:
                # Under load the inbox is rarely empty: no wait_for (a task and a timer) then.
                first = inbox.get_nowait() if not inbox.empty() else await asyncio.wait_for(inbox.get(), 0.5)
            except TimeoutError:
                if proc.gap_since:
                    await proc.handle([])  # a quiet stream still gives up on a gap in time
                continue
            items = [first]
            while len(items) < limit and not inbox.empty():
                items.append(inbox.get_nowait())
            batch = [msg for p, msg in items if leases.holds(p)]
            started = time.perf_counter()
            await proc.handle(batch)
            self.batch_seconds.observe(time.perf_counter() - started)
            last = {p: msg for p, msg in items}
            for p, msg in last.items():
                self.backlog[p] = num_pending(msg)
            self.status.info["symbols"] = len(proc.states)

    async def main_loop(self) -> None:
        leases = self.leases
        assert leases is not None
        self.spawn(self._apply(), "applier")
        period = self.settings.processor_lease_s / 3
        while not self.stop.is_set():
            try:
                gained, lost = await leases.step()
            except (NatsError, *STREAM_UNAVAILABLE) as exc:
                # A lease not renewed lapses by itself (holds() turns false): the tasks stop.
                log.warning("leases not renewed: %s: %s", exc.__class__.__name__, exc)
                gained, lost = set(), set()
                # Deleted (a publish to it then has no responder)? Make it again; else no harm done.
                with contextlib.suppress(NatsError, *STREAM_UNAVAILABLE):
                    s = self.settings
                    leases.kv = await open_bucket(self.js, s.processor_lease_s, s.stream_replicas)
            for p in sorted(lost | {p for p in self.tasks if not leases.holds(p)}):
                await self._stop_partition(p)
            for p in sorted(gained):
                self._start_partition(p)
            for p, task in list(self.tasks.items()):
                if task.done():  # a partition task never ends by itself while its lease holds
                    self.tasks.pop(p)
                    exc = None if task.cancelled() else task.exception()
                    if exc is not None and not isinstance(exc, Stopped):
                        log.error("partition %d died: %s; stopping (exit 1)", p, exc, exc_info=exc)
                        self.exit_code = 1
                        return
            self.status.info |= {"partitions": sorted(self.tasks), "processors": leases.members}
            self.status.info["backlog"] = sum(self.backlog.values())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), period)

    def _start_partition(self, p: int) -> None:
        assert self.proc is not None
        # Another processor may have written this partition's symbols since they were read here.
        self.proc.forget(lambda sym: names.partition_of(sym, self.settings.partitions) == p)
        self.tasks[p] = asyncio.create_task(self._consume(p), name=f"partition {p}")

    async def _stop_partition(self, p: int) -> None:
        task = self.tasks.pop(p, None)
        self.backlog.pop(p, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _consume(self, p: int) -> None:
        """Ticks of partition ``p`` into the inbox while its lease holds, pull requests kept
        outstanding ahead of the applier (:class:`Feed`); what is delivered and not applied
        when it ends is unacked, and goes to whoever owns the partition next."""
        leases, js, nc = self.leases, self.js, self.nc
        assert leases is not None and js is not None and nc is not None
        limit = self.settings.processor_batch
        config = api.ConsumerConfig(
            durable_name=names.processor_durable(p),
            name=names.processor_durable(p),
            filter_subject=names.partition_subjects(p),
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            max_ack_pending=20_000,
            ack_wait=30.0,
        )
        put = self.inbox.put_nowait
        feed = Feed(
            nc,
            js,
            names.TICK_STREAM,
            config,
            lambda msg: put((p, msg)),
            batch=limit,
            # The applier is behind: ask for no more ahead of it.
            room=lambda: self.inbox.qsize() <= 4 * limit,
            stop=self.stop,
        )
        await feed.run(lambda: not self.stop.is_set() and leases.holds(p))

    async def _hand_over(self) -> None:
        """On the way out (NATS still open): stop the partitions and give their leases back."""
        for p in list(self.tasks):
            await self._stop_partition(p)
        if self.leases is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.leases.release_all(), 5)


DAEMON = ProcessorDaemon

if __name__ == "__main__":
    main("processor", ProcessorDaemon)
