"""matching: applies exchange commands in stream order and records every outcome.

Durability rests on three facts:

1. A command is in JetStream ``EX_ORDERS`` (de-duplicated by ``Nats-Msg-Id``) before the
   engine sees it, and commands are applied in stream order by an ordered consumer.
2. The engine is deterministic: the same commands give the same events, byte for byte.
3. Engine state is a snapshot (in Redis, with the command sequence it includes) plus the
   commands after it.

The daemon works in batches: it takes every command the consumer has delivered (up to
``BATCH_MAX``), applies them one after the other without awaiting anything, and then writes
the batch's outcome in this order: the *records*, one ``EX_EVENTS`` message per market holding
that market's events of the batch as a JSON array (consecutive per-market seqs; cut in two
only past ``RECORD_MAX_BYTES``), published together and each confirmed; the trade ticks; the
Redis views, in one script with their watermark; then the replies; then depth. A record is
stored whole or not at all, and its ``Nats-Msg-Id`` (``<market>:<first seq>-<last seq>``)
makes a record resent after a lost ack a duplicate, as a unit.

So after a crash at any moment the daemon restores the snapshot, replays the commands
after it, and publishes only the events that ``EX_EVENTS`` does not hold yet: the last
event of each market's last record says where it stops (a crash between two markets'
records leaves one stored and the other not; the replay stores the other). Ticks and views
missing behind stored records are written by the replay, once; replies lost with the crash
are sent by the replay too (the reply inbox travels in the command). No acknowledged order
is lost, no fill is duplicated. A snapshot is only taken once every event it covers is
stored and derived.

The gateway learns a command's outcome from a core NATS reply sent after the events are
stored (``Stockctl-Reply`` header); the same records reach everyone on ``ex.event.<MKT>``.
Trades also feed ``md.tick.<MKT>`` so exchange markets are tickers too (a tick's ts is its
trade's, or the market's previous tick's if that is later: ts never goes back as seq goes on),
and depth goes to ``ex.book.<MKT>`` as snapshots and sequence-numbered deltas.

The engine has no clock, so good-till-date orders expire when a command at or past their
``expire_at`` is applied. So that they also expire in a quiet market, the daemon checks every
``TIME_EVERY_S`` whether the engine's earliest expiry has passed and, if so, publishes a ``Time``
command (de-duplicated per expiry) into ``EX_ORDERS`` like any other: applied in stream order,
it is replayed after a crash exactly as it was applied the first time.

This module holds the command loop and the durable record (events, their trade ticks, the
time commands); the rest of the daemon is in its siblings: :mod:`.views` (the Redis views
and their watermark), :mod:`.snapshots` (the engine snapshot), :mod:`.book_feed` (depth
snapshots and deltas) and :mod:`.queries` (the request/reply endpoints). Stream definitions
are in :mod:`stockctl.wire.streams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time
from collections import OrderedDict
from contextlib import AsyncExitStack
from typing import Any

import msgspec
import nats.js.errors
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue
from redis.exceptions import RedisError

from daemons.matching.book_feed import BookFeed
from daemons.matching.leader import TERM_RETRY_ON, Fenced, Leadership, LeaseLost, is_fenced
from daemons.matching.queries import serve_queries
from daemons.matching.snapshots import Snapshots, SnapshotUnusable
from daemons.matching.views import RedisViews, event_market
from stockctl.components import instance_number
from stockctl.exchange.engine import Exchange
from stockctl.exchange.groups import Group, GroupsError, MarketGroups
from stockctl.runtime.connections import open_nats, open_redis
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.leases import member_id, open_bucket
from stockctl.runtime.logs import REQUEST_ID_HEADER, bind
from stockctl.runtime.process import failpoint
from stockctl.runtime.retry import STREAM_BACKOFF, backoff_sleep, retry
from stockctl.runtime.status import StateLog, StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import (
    Event,
    Rejected,
    Time,
    Trade,
    command_decoder,
    decode_record,
    encode_record,
)
from stockctl.wire.exchange import encode as ex_encode
from stockctl.wire.marketdata import Tick, encode, tick_decoder
from stockctl.wire.streams import STREAM_UNAVAILABLE, ensure_exchange_streams, ensure_tick_stream, last_tick_msg

log = logging.getLogger("stockctl.matching")

EXIT_CONFIG = 78  # the supervisor does not restart a daemon that exits with this

RESULT_CACHE = 100_000  # recent command outcomes kept for retried submissions
BATCH_MAX = 1_000  # commands applied before their events are written out
RECORD_MAX_BYTES = 256 * 1024  # one EX_EVENTS record stays well under NATS's 1 MB max_payload
TIME_EVERY_S = 0.25  # how often a due good-till-date expiry is checked for, in a quiet market
ORDERED_HEARTBEAT_S = 1.0  # the command consumer's idle heartbeat: how soon a lost consumer is noticed


class Matching:
    """The daemon's state around the pure engine."""

    def __init__(
        self,
        settings: Settings,
        nc: NATS,
        js: JetStreamContext,
        r: aioredis.Redis,
        status: StatusFile,
        stop: asyncio.Event,
        groups: MarketGroups,
        group: Group,
    ) -> None:
        self.s, self.nc, self.js, self.r, self.status, self.stop = settings, nc, js, r, status, stop
        self.group = group
        self.accounts = group.accounts_market  # this group's pseudo-market of account commands and events
        self.specs = group.markets
        self.engine = Exchange(
            self.specs, first_id=group.first_id, id_step=groups.id_step, accounts_market=self.accounts
        )
        self.cmd_seq = 0  # last command stream sequence applied
        self.published: dict[str, int] = {}  # market -> last event seq stored in EX_EVENTS
        self.tick_seq: dict[str, int] = {}  # market -> last md.tick seq
        self.tick_ts: dict[str, int] = {}  # market -> ts of its last md.tick: the next is not older
        # Derived outputs of stored events: trade ticks in MD_TICKS (``ticked``: the event seq
        # of the last one) and the fills/trades/orders views in Redis (``views.viewed``: a
        # watermark written with them, after the ticks). Events are stored first, so after a
        # crash ``views.viewed`` can lag ``published``; the replay then writes what is missing, once.
        self.ticked: dict[str, int] = {}
        self.views = RedisViews(r, stop)
        self.book_feed = BookFeed(nc)
        self.results: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.snapshots = Snapshots(r, status, groups, group)
        self.time_sent = 0  # the expiry a Time command was last published for
        self.time_checked = 0.0
        self.nats_state = StateLog(log, "JetStream publish")
        self.leader: Leadership | None = None  # its fence goes on every record once this daemon leads

    @property
    def market_names(self) -> list[str]:
        return [spec.symbol for spec in self.engine.markets]

    # --- startup ----------------------------------------------------------------------

    async def warm(self) -> None:
        """Load the stored snapshot if it is newer than the engine (a standby does this while it waits)."""
        try:
            restored = await self.snapshots.load(self.specs, newer_than=self.cmd_seq)
        except SnapshotUnusable as exc:
            log.error("%s", exc)
            raise SystemExit(EXIT_CONFIG) from None
        if restored is not None:
            self.engine, self.cmd_seq = restored
            log.info("restored engine snapshot at command %d", self.cmd_seq)

    async def positions(self) -> None:
        """Where each market's stored events, ticks and views stop: read once this daemon leads."""
        viewed = await self.views.stored_watermarks()
        fresh: list[str] = []
        for market in [*self.market_names, self.accounts]:
            published = await self._last_event_seq(market)
            self.published[market] = published
            tick = await self._last_tick(market)
            self.tick_seq[market] = tick.seq if tick else 0
            self.tick_ts[market] = tick.ts if tick else 0
            self.ticked[market] = (tick and names.event_seq_of_origin(tick.origin)) or 0
            # No watermark: an exchange older than the watermark, its views taken as complete (a market
            # with no events yet gets watermark 0 below, so a crash in its first batch is repaired).
            self.views.viewed[market] = min(viewed.get(market, published), published)
            if market not in viewed and published == 0:
                fresh.append(market)
            if self.views.viewed[market] < published:
                log.warning(
                    "%s: events up to %d are stored but their ticks/views stop at %d; the replay writes the rest",
                    market,
                    published,
                    self.views.viewed[market],
                )
        await retry(lambda: self.views.start_empty(fresh), stop=self.stop, what="Redis views watermark", logger=log)
        self.snapshots.mark(self.cmd_seq)

    async def _last_event_seq(self, market: str) -> int:
        try:
            raw = await self.js.get_last_msg(names.EVENT_STREAM, names.event_subject(market))
        except nats.js.errors.NotFoundError:
            return 0
        return decode_record(raw.data)[-1].seq

    async def _last_tick(self, market: str) -> Tick | None:
        raw = await last_tick_msg(self.js, market, self.s.partitions)
        return None if raw is None else tick_decoder.decode(raw.data)

    # --- one batch of commands --------------------------------------------------------

    async def handle(self, batch: list[Msg]) -> None:
        """Apply a batch of commands; store and derive its events; then answer and publish depth.

        Nothing in the loop over commands awaits: the engine applies them one after the other,
        and every event is encoded once, its bytes reused for the record, the views and the reply.
        """
        to_store: list[tuple[Event, bytes]] = []
        to_derive: list[tuple[Event, bytes]] = []  # stored before a crash, derived outputs maybe not
        replies: list[tuple[str, bytes]] = []
        touched: set[str] = set()
        published, missing, results = self.published, self.views.missing, self.results
        applied = 0
        for msg in batch:
            sseq = msg.metadata.sequence.stream
            if sseq <= self.cmd_seq:
                continue  # already applied (a redelivery after a consumer reset)
            self.cmd_seq = sseq
            try:
                cmd = command_decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("skipping malformed command at stream seq %d: %s", sseq, exc)
                self.status.incr("malformed")
                continue
            events = self.engine.apply(cmd)
            applied += 1
            headers = msg.headers
            if log.isEnabledFor(logging.DEBUG) or (headers and REQUEST_ID_HEADER in headers and _rejected(events)):
                # Rejections of requests that came through the gateway are worth a line; the
                # market makers' routine "nothing to cancel" would only be noise.
                self._log_outcome(msg, sseq, events)
            encoded = [ex_encode(ev) for ev in events]
            for ev, data in zip(events, encoded, strict=True):
                market = ev.market or self.accounts
                touched.add(market)
                if ev.seq > published.get(market, 0):
                    to_store.append((ev, data))
                elif missing(ev):
                    to_derive.append((ev, data))
            answer = encode_record(encoded)
            if not isinstance(cmd, Time):  # nobody asks for the outcome of a time command
                user = getattr(cmd, "user", "")
                key = getattr(cmd, "client_order_id", None) or getattr(cmd, "request_id", "")
                results[(user, key)] = answer
                if len(results) > RESULT_CACHE:
                    results.popitem(last=False)
            reply = headers.get(names.REPLY_HEADER) if headers else None
            if reply:
                replies.append((reply, answer))
        if applied:
            self.status.incr("commands", applied)
        failpoint("matching.before_store")
        if to_derive:
            await self._derive(to_derive)
        if to_store:
            await self._store(to_store)
        failpoint("matching.before_replies")
        # Core NATS: each publish only appends to the client's outbound buffer (it waits only
        # when that buffer is full), and the buffer goes out in one write.
        publish = self.nc.publish
        for inbox, answer in replies:
            await publish(inbox, answer)
        for market in touched:
            if market != self.accounts:
                await self.book_feed.publish(self.engine, market)
        await self.maybe_snapshot()

    def _log_outcome(self, msg: Msg, sseq: int, events: list[Event]) -> None:
        """One line per command (DEBUG) or per rejection (INFO), with the gateway's request id."""
        request_id = msg.headers.get(REQUEST_ID_HEADER) if msg.headers else None
        first = events[0] if events else None
        with bind(
            request_id=request_id,
            cmd_seq=sseq,
            order_id=getattr(first, "order_id", None),
            client_order_id=getattr(first, "client_order_id", None),
        ):
            for ev in events:
                if isinstance(ev, Rejected):
                    log.info("rejected %s for %s: %s", ev.client_order_id, ev.user, ev.reason)
            log.debug("command %d -> %s", sseq, ", ".join(ev.__struct_config__.tag for ev in events) or "nothing")

    async def _store(self, events: list[tuple[Event, bytes]]) -> None:
        """Events into EX_EVENTS as one record per market (confirmed), then ticks and the Redis views.

        A record is one message: JetStream stores all of it or none of it, and its
        ``Nats-Msg-Id`` (market, first and last event seq) makes a resent record a duplicate.
        A market's events of one batch are split over several records only past
        ``RECORD_MAX_BYTES``.
        """
        by_market: dict[str, list[tuple[Event, bytes]]] = {}
        for item in events:
            by_market.setdefault(event_market(item[0]), []).append(item)
        pending = []
        fence = self.leader.fence() if self.leader else {}
        for market, items in by_market.items():
            subject = names.event_subject(market)
            for chunk in _chunks(items, RECORD_MAX_BYTES):
                msg_id = f"{market}:{chunk[0][0].seq}-{chunk[-1][0].seq}"
                headers = {"Nats-Msg-Id": msg_id, **fence}
                pending.append((subject, encode_record([data for _, data in chunk]), headers))
        await self._publish_confirmed(pending, fenced=bool(fence))
        for market, items in by_market.items():
            self.published[market] = items[-1][0].seq
        self.status.incr("events", len(events))
        self.status.incr("records", len(pending))
        failpoint("matching.after_events")
        await self._derive(events)

    async def _derive(self, events: list[tuple[Event, bytes]]) -> None:
        """Trade ticks, then the Redis views, for stored events that do not have them yet.

        Ticks go first and carry their event seq, views are written with their watermark in
        one atomic script: whichever step a crash interrupts, the restart knows where it stopped.
        """
        ticks: list[tuple[str, bytes, dict[str, str]]] = []
        for ev, _ in events:
            if isinstance(ev, Trade):
                market = ev.market
                if ev.seq > self.ticked.get(market, 0):
                    seq = self.tick_seq.get(market, 0) + 1
                    self.tick_seq[market] = seq
                    # A trade's ts is its command's, stamped by whichever gateway took it: two
                    # gateways (or a publish retried through a NATS failover) store a command
                    # stamped a moment earlier after a later one. A market's ticks go forward in
                    # time as in seq, or history (ordered by ts, then seq) disagrees with the stream.
                    ts = self.tick_ts[market] = max(ev.ts, self.tick_ts.get(market, 0))
                    origin = names.exchange_tick_origin(ev.seq)
                    tick = Tick(market, ev.price, ts, seq, volume=_whole(ev.qty), origin=origin)
                    ticks.append(
                        (
                            names.tick_subject(market, self.s.partitions),
                            encode(tick),
                            {"Nats-Msg-Id": f"{market}:{seq}"},
                        )
                    )
                    self.ticked[market] = ev.seq
        if ticks:
            await self._publish_confirmed(ticks)
        failpoint("matching.after_ticks")
        missing = self.views.missing
        await self.views.record([item for item in events if missing(item[0])])

    async def _publish_confirmed(self, items: list[tuple[str, bytes, dict[str, str]]], fenced: bool = False) -> None:
        """Publish in order and wait until JetStream has every one; retry through outages.

        ``fenced`` items (records carrying the term) go one at a time: a clustered stream turns
        down an expected-sequence check while another message is still being agreed on (error
        10164 for all but the first of a pipelined lot), and nats-py 2.16 does not fail the
        future of a refused async publish (its reply handler raises instead), so a refusal
        would only show as a timeout. One at a time, a refusal is an error, at once.
        """
        attempt = 0
        start = 0
        while start < len(items):
            try:
                if fenced:
                    for subject, data, headers in items[start:]:
                        await self.js.publish(subject, data, headers=headers, timeout=5.0)
                        start += 1
                else:
                    futures = [
                        await self.js.publish_async(subject, data, headers=headers, wait_stall=5.0)
                        for subject, data, headers in items[start:]
                    ]
                    # One timer for the lot: acks arrive in order on one connection.
                    await asyncio.wait_for(asyncio.gather(*futures), 5.0)
                    start = len(items)
                self.nats_state.set("ok")
            except Exception as exc:  # an outage: resend the rest (ids de-duplicate)
                if is_fenced(exc) or (self.leader and await self.leader.superseded()):
                    raise Fenced(f"a record was refused: another matching daemon leads now ({exc!r})") from None
                self.nats_state.set("failing", f"{exc.__class__.__name__}: {exc}; retrying")
                await backoff_sleep(attempt, asyncio.Event(), STREAM_BACKOFF)
                attempt += 1
                if self.stop.is_set() and attempt > 20:
                    raise

    async def maybe_send_time(self) -> None:
        """A Time command into EX_ORDERS once the earliest good-till-date expiry has passed."""
        now = time.monotonic()
        if now - self.time_checked < TIME_EVERY_S:
            return
        self.time_checked = now
        due = self.engine.next_expiry()
        if due is None or due == self.time_sent or due > time.time_ns():
            return
        cmd = Time(ts=max(time.time_ns(), due))
        try:
            await self.js.publish(
                names.order_subject(self.accounts),
                ex_encode(cmd),
                headers={"Nats-Msg-Id": f"time:{self.group.name}:{due}"},
                timeout=5,
            )
        except Exception as exc:  # NATS away: the next check sends it
            log.warning("time command for expiry %d not sent (%s); retrying", due, exc)
            return
        self.time_sent = due

    async def maybe_snapshot(self, force: bool = False) -> None:
        """A snapshot when one is due, unless stored events still lack their ticks or views."""
        if not self.snapshots.due(self.cmd_seq, force):
            return
        if any(self.views.viewed.get(m, 0) < seq for m, seq in self.published.items()):
            return  # a snapshot past events whose ticks/views are missing would make them unrecoverable
        await self.snapshots.take(self.engine, self.cmd_seq)


def _chunks(items: list[tuple[Event, bytes]], max_bytes: int) -> list[list[tuple[Event, bytes]]]:
    """``items`` in order, cut so that each chunk's encoded events stay under ``max_bytes`` (one at least)."""
    out: list[list[tuple[Event, bytes]]] = [[]]
    size = 0
    for item in items:
        if out[-1] and size + len(item[1]) + 1 > max_bytes:
            out.append([])
            size = 0
        out[-1].append(item)
        size += len(item[1]) + 1
    return out


def _rejected(events: list[Event]) -> bool:
    return any(isinstance(ev, Rejected) for ev in events)


def _whole(qty: str) -> int:
    return int(qty.split(".")[0])


class MatchingDaemon(Daemon):
    """Connect; lead the market group or stand by for it; then apply commands in stream order.

    Leading (see :mod:`.leader`): the lease is taken, a term written, the engine restored,
    queries served and commands consumed. Standing by: the lease is tried every third of
    ``matching_lease_s`` and the engine kept warm from the snapshot, so that a takeover
    replays only the commands after it. A leader whose lease lapses stops applying until it
    has it again; if another daemon led meanwhile it exits 1 (the supervisor starts it again,
    as a standby).
    """

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.m: Matching | None = None
        self.js: JetStreamContext | None = None
        self.leader: Leadership | None = None
        self.stack: AsyncExitStack | None = None
        self.active = False
        self.sub: Any = None
        self.inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self.reconnected = asyncio.Event()  # set after a NATS reconnect: the command consumer may be gone
        self.lease_held = asyncio.Event()  # set by the lease task when a step holds the lease

    async def startup(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        self.stack = stack
        r = await open_redis(stack, self.ops, self.stop, log)
        nc = await open_nats(stack, self.ops, self.stop, log, on_reconnect=self.reconnected.set)
        js = self.js = nc.jetstream(publish_async_max_pending=20_000)

        async def setup() -> None:
            await ensure_exchange_streams(js, settings.stream_replicas)
            await ensure_tick_stream(js, settings)

        await retry(setup, stop=self.stop, what="JetStream", logger=log)
        kv = await retry(self._bucket, stop=self.stop, what="matching lease", logger=log)
        try:
            groups = settings.groups()
        except GroupsError as exc:
            log.error("STOCKCTL_MARKET_GROUPS: %s", exc)
            raise SystemExit(EXIT_CONFIG) from None
        except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("bad markets file %s: %s", settings.markets_file, exc)
            raise SystemExit(EXIT_CONFIG) from None
        group = groups.of_instance(instance_number(self.name))
        await retry(lambda: self._check_layout(r, groups), stop=self.stop, what="market groups", logger=log)
        me = member_id(socket.gethostname(), self.name, str(settings.home.resolve()))
        self.leader = Leadership(js, kv, me, settings.matching_lease_s, group.name)
        self.m = Matching(settings, nc, js, r, self.status, self.stop, groups, group)
        self.status.info |= {"markets": self.m.market_names, "group": group.name, "role": "standby", "member": me}
        await self.m.warm()
        # Lead at once when nobody else does, so that "ready" means "matching" on one machine.
        held = await retry(self.leader.lease.step, stop=self.stop, what="matching lease", logger=log)
        self.spawn(self._keep_lease(), "lease")  # renewing from now: leading may take a while to start
        if not (held and await self._lead()):
            log.info("standing by: another matching daemon leads group %s", self.leader.group)

    async def _check_layout(self, r: aioredis.Redis, groups: MarketGroups) -> None:
        """The exchange keeps the group layout its history was made with: another one would give
        a group an engine without the commands that made its accounts (exit 78 with the fix)."""
        layout = groups.layout()
        if len(groups.groups) > 1 and not await r.exists(names.GROUPS_KEY) and await r.exists(names.SNAPSHOT_KEY):
            recorded = "main (one group of every market)"  # an exchange made before market groups
        else:
            await r.set(names.GROUPS_KEY, layout, nx=True)
            recorded = (await r.get(names.GROUPS_KEY) or b"").decode()
        if recorded != layout:
            log.error(
                "this exchange's history was made with the market groups %s, and STOCKCTL_MARKET_GROUPS now gives %s:"
                " groups cannot change under an exchange with history; set the old groups again, or start a"
                " fresh exchange (a new STOCKCTL_HOME and Redis)",
                recorded,
                layout,
            )
            raise SystemExit(EXIT_CONFIG)

    async def _bucket(self) -> KeyValue:
        s = self.settings
        assert self.js is not None
        return await open_bucket(self.js, s.matching_lease_s, s.stream_replicas, names.MATCHING_LEASES_BUCKET)

    async def _keep_lease(self) -> None:
        """Renew the lease (or, standing by, try to take it) every third of the lease time."""
        leader = self.leader
        assert leader is not None
        while not self.stop.is_set():
            try:
                if await leader.lease.step():
                    self.lease_held.set()
            except (BucketNotFoundError, nats.js.errors.NotFoundError):
                log.warning("the matching leases bucket is gone; making it again")
                with contextlib.suppress(*TERM_RETRY_ON):
                    leader.lease.kv = await self._bucket()
            except Exception as exc:  # NATS away: a lease not renewed lapses by itself (holds() turns false)
                log.warning("matching lease not renewed: %s: %s", exc.__class__.__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), leader.period)

    async def _lead(self) -> bool:
        """Holding the lease: write a term, restore, serve queries and consume commands. False
        if the lease lapsed before the term was written (this daemon stands by again)."""
        m, leader, stack = self.m, self.leader, self.stack
        assert m is not None and leader is not None and stack is not None
        started = time.monotonic()
        try:
            await retry(leader.claim, stop=self.stop, what="matching term", logger=log, retry_on=TERM_RETRY_ON)
        except LeaseLost as exc:
            log.warning("%s", exc)
            return False
        m.leader = leader
        await m.warm()  # a snapshot taken by the daemon that led before
        # Positions are read after the term: nothing older can be stored past them now. They and
        # the command consumer need their streams led, and a stream has no leader for a few
        # seconds after its NATS node fails (a standby takes over in just such a fault): wait.
        unled = STREAM_UNAVAILABLE
        await retry(m.positions, stop=self.stop, retry_on=unled, backoff=STREAM_BACKOFF, what="positions", logger=log)
        gc.collect()
        gc.freeze()  # the restored engine is long-lived: keep it out of every future collection
        await serve_queries(stack, m.nc, m, m.group.name)  # answered from here until the stack unwinds
        self.sub = await retry(
            self._subscribe, stop=self.stop, retry_on=unled, backoff=STREAM_BACKOFF, what="command consumer", logger=log
        )
        self.active = True
        self.status.info |= {"role": "active", "term": leader.term}
        took = time.monotonic() - started
        log.info("leading group %s from command %d (%.3f s to lead)", leader.group, m.cmd_seq, took)
        return True

    async def _stand_by(self) -> None:
        """Until the lease is this daemon's: keep the engine warm from the snapshot."""
        m, leader = self.m, self.leader
        assert m is not None and leader is not None
        while not self.stop.is_set():
            if leader.lease.holds() and await self._lead():
                return
            try:
                await m.warm()
            except RedisError as exc:
                log.warning("snapshot not loaded while standing by: %s", exc)
            self.lease_held.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lease_held.wait(), leader.period)

    async def _regain(self) -> None:
        """The lease lapsed while leading: apply nothing until it is renewed, then go on only
        if no other daemon led meanwhile (:class:`Fenced` otherwise)."""
        m, leader = self.m, self.leader
        assert m is not None and leader is not None
        log.warning("the matching lease lapsed; no command is applied until it is renewed")
        self.status.info["role"] = "lapsed"
        while not self.stop.is_set():
            if leader.lease.holds():
                await self._write_term_again()
                return
            try:
                taken = await leader.taken_by_other()
            except TERM_RETRY_ON:  # NATS away: ask again
                taken = False
            if taken:
                raise Fenced("another matching daemon took the lease")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), leader.period / 3)

    async def _write_term_again(self) -> None:
        """A new term after this daemon's own (:class:`Fenced` if another daemon wrote one between)."""
        assert self.leader is not None
        await retry(self.leader.renew, stop=self.stop, what="matching term", logger=log, retry_on=TERM_RETRY_ON)
        self.status.info |= {"role": "active", "term": self.leader.term}

    async def _subscribe(self) -> Any:
        assert self.m is not None and self.js is not None
        start = self.m.cmd_seq + 1
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        if self.m.group.name != names.MATCHING_GROUP:  # only this group's commands (``main`` has every market)
            config.filter_subjects = [names.order_subject(s) for s in (*self.m.market_names, self.m.accounts)]

        async def on_msg(msg: Msg) -> None:
            self.inbox.put_nowait(msg)

        # An ordered consumer is R1 in memory: it dies with its NATS node. nats-py recreates it
        # when two heartbeats are missed, and tries again only after two more, so its default
        # of 5 s held commands for 18 s after a node kill (one retry came before the stream had
        # a new leader). At 1 s it is back within about 2 s of the stream's new leader.
        sub = await self.js.subscribe(
            names.ORDER_SUBJECTS,
            stream=names.ORDER_STREAM,
            ordered_consumer=True,
            idle_heartbeat=ORDERED_HEARTBEAT_S,
            config=config,
            cb=on_msg,
        )
        log.info("consuming commands from stream seq %d", start)
        return sub

    async def main_loop(self) -> None:
        try:
            if not self.active:
                await self._stand_by()
            await self._apply_commands()
        except Fenced as exc:
            log.error("%s; stopping without answering (exit 1): this daemon starts again as a standby", exc)
            self.active = False
            self.exit_code = 1

    async def _apply_commands(self) -> None:
        m, inbox, leader = self.m, self.inbox, self.leader
        assert m is not None and leader is not None
        batch_seconds = self.ops.histogram("batch_seconds", "Time to apply, store and answer one batch of commands")
        renew_every = self.settings.matching_term_renew_s
        while not self.stop.is_set():
            if not leader.lease.holds():
                await self._regain()
                continue
            if leader.renew_due(renew_every):  # between batches: no record in flight with the old term
                await self._write_term_again()
            if self.reconnected.is_set():
                # The ordered consumer lives in the server's memory: a restarted nats-server has lost
                # it, and nats-py would notice only after two missed heartbeats (10-20 s without
                # orders). Start a new one at once; commands already applied are skipped by seq.
                self.reconnected.clear()
                with contextlib.suppress(Exception):
                    await self.sub.unsubscribe()
                self.sub = await retry(self._subscribe, stop=self.stop, what="JetStream consumer", logger=log)
            await m.maybe_send_time()
            if inbox.empty():  # a timer only when there is nothing to do: none per batch under load
                try:
                    first = await asyncio.wait_for(inbox.get(), TIME_EVERY_S)
                except TimeoutError:
                    await m.maybe_snapshot()
                    continue
            else:
                first = inbox.get_nowait()
            batch = [first]
            while len(batch) < BATCH_MAX and not inbox.empty():
                batch.append(inbox.get_nowait())
            started = time.perf_counter()
            await m.handle(batch)
            batch_seconds.observe(time.perf_counter() - started)
            self.status.info["backlog"] = batch[-1].metadata.num_pending + inbox.qsize()
            self.status.info["views_set_back"] = m.views.setbacks

    async def shutdown(self) -> None:
        if self.m is not None and self.active:
            await self.m.maybe_snapshot(force=True)
        if self.leader is not None and self.exit_code == 0:
            # Hand over now rather than after the lease time: a standby leads at once.
            with contextlib.suppress(Exception):
                await self.leader.lease.release()


DAEMON = MatchingDaemon

if __name__ == "__main__":
    main("matching", MatchingDaemon)
