"""processor: ticks in, latest price / history / candles / SMA signals out.

A durable JetStream consumer of ``md.tick.>``. Each batch of ticks becomes one Redis
MULTI/EXEC transaction (quote hash, history list, candle sets, signal list, and the
per-symbol stream sequence used for dedup); only after EXEC succeeds are the ticks
acknowledged and the quotes and signals published on core NATS. A crash between
EXEC and ack leads to redelivery, which the stored stream sequence turns into a no-op,
so nothing is lost or counted twice.

Each tick is also published on ``stock_prices`` as seed 000's ``StockPrice`` JSON
(:mod:`stockctl.seeds`), spliced from the quote's own text: no second encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import msgspec
import nats.js.errors
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from redis.exceptions import RedisError

from stockctl import names
from stockctl.candles import CandleState
from stockctl.ops import start_ops
from stockctl.processing import Applied, SymbolState, Verdict, candle_of
from stockctl.seeds import STOCK_PRICES_SUBJECT, stock_price
from stockctl.service import (
    StateLog,
    StatusFile,
    backoff_sleep,
    ensure_tick_stream,
    main,
    open_nats,
    open_redis,
    shutdown_event,
    until_ready,
)
from stockctl.settings import Settings
from stockctl.wire import Tick, candle_decoder, encode, point_decoder, tick_decoder

log = logging.getLogger("stockctl.processor")

GAP_GRACE_S = 15.0
"""How long a missing tick may still turn up (a publisher retrying after a NATS outage
publishes it behind newer ones) before the processor gives up on it and moves on."""
HOLD_DELAY_S = 0.2


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
    held: list[Msg] = field(default_factory=list)
    """Ticks that arrived before a missing one: not acked, redelivered after a short delay."""

    def add(self, state: SymbolState, applied: Applied) -> None:
        sym = state.symbol
        self.touched[sym] = state
        self.points.setdefault(sym, []).append(encode(applied.point))
        for iv, candle in applied.candles:
            # Encoded once at commit, not per tick: later ticks of the bucket mutate it.
            self.candles.setdefault((sym, iv), {})[candle.start] = candle
        self.outbox.append((names.quote_subject(sym), encode(applied.quote)))
        q = applied.quote  # seed 000's clients read every tick on `stock_prices`
        self.outbox.append((STOCK_PRICES_SUBJECT, stock_price(sym, q.price, q.ts)))
        if applied.signal is not None:
            data = encode(applied.signal)
            self.signals.setdefault(sym, []).append(data)
            self.outbox.append((names.signal_subject(sym), data))

    def encoded_candles(self) -> dict[tuple[str, str], dict[int, bytes]]:
        return {
            (sym, iv): {start: encode(candle_of(sym, iv, c)) for start, c in by_start.items()}
            for (sym, iv), by_start in self.candles.items()
        }


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
    ) -> None:
        self.s, self.nc, self.js, self.r = settings, nc, js, r
        self.status, self.stop = status, stop
        self.states: dict[str, SymbolState] = {}
        self.redis_state = StateLog(log, "Redis")
        self.gap_since: dict[str, float] = {}

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
            async with self.r.pipeline(transaction=True) as pipe:
                for sym in self.states:
                    pipe.hset(names.quote_key(sym), mapping={"seq": 0, "sseq": 0})
                await pipe.execute()
            for st in self.states.values():
                st.last_seq = st.last_sseq = 0
        await self.r.set(names.STREAM_EPOCH_KEY, epoch)

    # --- one batch --------------------------------------------------------------------

    async def handle(self, batch: list[Msg]) -> None:
        """Apply, commit, ack, publish. Retries the whole batch until Redis takes it."""
        attempt = 0
        while True:
            try:
                plan = await self._plan(batch)
                await self._commit(plan)
                self.redis_state.set("ok")
                break
            except RedisError as exc:
                # In-memory state may be ahead of Redis now: reload it after the outage.
                self.redis_state.set("failing", f"{exc.__class__.__name__}: {exc}; retrying batch")
                self.status.incr("redis_errors")
                await backoff_sleep(attempt, self.stop)
                attempt += 1
                if self.stop.is_set():
                    return  # not acked: redelivered to the next run
                with contextlib.suppress(RedisError):
                    await self.restore_all()
        held = {id(m) for m in plan.held}
        for msg in batch:
            if id(msg) in held:
                await msg.nak(delay=HOLD_DELAY_S)
            else:
                await msg.ack()
        for subject, data in plan.outbox:
            await self.nc.publish(subject, data)
        for (sym, iv), by_start in plan.encoded.items():
            await self.nc.publish(names.candle_subject(sym, iv), by_start[max(by_start)])
        self.status.incr("batches")

    async def _plan(self, batch: list[Msg]) -> Plan:
        plan = Plan()
        for msg in batch:
            try:
                tick = tick_decoder.decode(msg.data)
            except msgspec.ValidationError as exc:
                log.error("dropping malformed tick on %s: %s", msg.subject, exc)
                self.status.incr("malformed")
                await msg.term()
                continue
            sseq = msg.metadata.sequence.stream
            state = self.states.get(tick.symbol)
            if state is None:
                state = self.states[tick.symbol] = await self.load(tick.symbol)
                plan.new_symbols.add(tick.symbol)
            verdict = state.classify(tick, sseq)
            if verdict is Verdict.GAP:
                await self._fill_gap(state, tick, sseq, plan)
                if state.last_seq + 1 < tick.seq and not self._give_up_waiting(state, tick):
                    plan.held.append(msg)
                    self.status.incr("held")
                    continue
                verdict = Verdict.APPLY
            elif verdict is Verdict.RESET:
                log.warning("%s: publisher restarted its sequence at 1", tick.symbol)
                verdict = Verdict.APPLY
            if verdict is Verdict.APPLY:
                plan.add(state, state.apply(tick, sseq))
                self.gap_since.pop(tick.symbol, None)
                self.status.incr("ticks")
            else:
                self.status.incr(verdict.value)
        return plan

    def _give_up_waiting(self, state: SymbolState, tick: Tick) -> bool:
        """True once a gap has lasted past the grace period: those ticks are not coming."""
        since = self.gap_since.setdefault(tick.symbol, time.monotonic())
        if time.monotonic() - since < GAP_GRACE_S:
            return False
        lost = tick.seq - state.last_seq - 1
        log.warning("%s: giving up on %d missing ticks before seq %d", tick.symbol, lost, tick.seq)
        self.status.incr("gap_lost", lost)
        return True

    async def _fill_gap(self, state: SymbolState, tick: Tick, sseq: int, plan: Plan) -> None:
        """Apply missing ticks of this symbol that the stream holds (redelivery can reorder)."""
        subject = names.tick_subject(tick.symbol)
        cursor = state.last_sseq + 1
        while cursor < sseq and state.last_seq + 1 < tick.seq:
            try:
                raw = await self.js.get_msg(names.TICK_STREAM, seq=cursor, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            if raw.seq is None or raw.seq >= sseq:
                break
            missing = tick_decoder.decode(raw.data)
            if missing.seq == state.last_seq + 1:
                plan.add(state, state.apply(missing, raw.seq))
                self.status.incr("ticks")
                self.status.incr("gap_filled")
            cursor = raw.seq + 1

    async def _commit(self, plan: Plan) -> None:
        if not plan.touched:
            return
        s = self.s
        async with self.r.pipeline(transaction=True) as pipe:
            if plan.new_symbols:
                pipe.sadd(names.SYMBOLS_KEY, *plan.new_symbols)
            for sym, state in plan.touched.items():
                pipe.hset(names.quote_key(sym), mapping=state.quote_fields())
            for sym, points in plan.points.items():
                key = names.history_key(sym)
                pipe.rpush(key, *points)
                pipe.ltrim(key, -s.history_limit, -1)
            plan.encoded = plan.encoded_candles()
            for (sym, iv), by_start in plan.encoded.items():
                key = names.candles_key(sym, iv)
                for start, data in by_start.items():
                    score = start // 1_000_000_000  # seconds: exact as a Redis double
                    pipe.zremrangebyscore(key, score, score)
                    pipe.zadd(key, {data: score})
                pipe.zremrangebyrank(key, 0, -(s.candle_limit + 1))
            for sym, signals in plan.signals.items():
                key = names.signals_key(sym)
                pipe.rpush(key, *signals)
                pipe.ltrim(key, -s.signal_limit, -1)
            await pipe.execute()


async def run(settings: Settings) -> None:
    stop = shutdown_event()
    status = StatusFile(settings, "processor")
    async with AsyncExitStack() as stack:
        # --- startup ---------------------------------------------------------------
        ops = await start_ops(stack, settings, "processor", status)
        r = await open_redis(stack, ops, stop, log)
        if r is None:
            return
        nc = await open_nats(stack, ops, stop, log)
        if nc is None:
            return
        js = nc.jetstream()
        info = await until_ready(stop, log, "JetStream", lambda: ensure_tick_stream(js, settings))
        if info is None:
            return
        proc = Processor(settings, nc, js, r, status, stop)
        await proc.restore_all()
        await proc.check_stream_epoch(info)
        log.info("restored %d symbols from Redis", len(proc.states))

        inbox: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            inbox.put_nowait(msg)

        await js.subscribe(
            names.TICK_SUBJECTS,
            durable=names.PROCESSOR_DURABLE,
            stream=names.TICK_STREAM,
            cb=on_msg,
            manual_ack=True,
            config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                max_ack_pending=20_000,
                ack_wait=30.0,
            ),
        )
        status.ready = True
        status.info |= {"symbols": len(proc.states)}
        status_task = asyncio.create_task(status.run(stop))
        stack.callback(status.remove)

        # --- main loop -------------------------------------------------------------
        limit = settings.processor_batch
        batch_seconds = ops.histogram("batch_seconds", "Time to apply and commit one batch of ticks")
        while not stop.is_set():
            try:
                first = await asyncio.wait_for(inbox.get(), 0.5)
            except TimeoutError:
                continue
            batch = [first]
            while len(batch) < limit and not inbox.empty():
                batch.append(inbox.get_nowait())
            started = time.perf_counter()
            await proc.handle(batch)
            batch_seconds.observe(time.perf_counter() - started)
            status.info["symbols"] = len(proc.states)
            status.info["backlog"] = batch[-1].metadata.num_pending + inbox.qsize()

        # --- shutdown --------------------------------------------------------------
        # Whatever is still queued is unacked and will be redelivered to the next run.
        await status_task


if __name__ == "__main__":
    main("processor", run)
