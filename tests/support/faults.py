"""The machinery of the fault-injection suite (``tests/faults/test_faults.py``).

* :class:`Load`: a few users trading through the gateway with the product's REST client
  (:class:`stockctl.client.api.GatewayClient`), one thread each, at a bounded rate. A submission
  that fails (gateway gone, matching not answering) is retried with the same
  ``client_order_id``, as a careful bot would; every acknowledgement is recorded.
* :class:`Watcher`: the product's WebSocket client (:func:`stockctl.sdk.stream.stream`) on a
  quote channel and the user's own ``orders``, recording what arrives and when.
* :class:`Ledger`: an independent replay of the command log (``EX_ORDERS``) into a fresh
  engine next to what the matching daemon stored (``EX_EVENTS``), and the tick stream
  (``MD_TICKS``); all read incrementally, so each check costs only what is new.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import nats
import nats.errors
from nats.js import JetStreamContext, api

from stockctl.client.api import GatewayClient, OrderRejected
from stockctl.errors import ServiceUnavailable, StockctlError
from stockctl.exchange.engine import Exchange
from stockctl.sdk.stream import stream
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import (
    Accepted,
    Cancelled,
    Event,
    Funded,
    Rejected,
    Trade,
    command_decoder,
    event_decoder,
    split_record,
)
from stockctl.wire.exchange import encode as ex_encode
from stockctl.wire.marketdata import Quote, Tick, tick_decoder
from stockctl.wire.nats_urls import nats_options
from stockctl.wire.streams import STREAM_UNAVAILABLE

MARKETS = ("TATA_INR", "JIO_INR")
RETRY_FOR_S = 45.0  # how long a trader keeps retrying one submission through an outage
MAX_OPEN = 20  # per trader: above this it cancels instead of adding (bounded reservations)


# --- load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """An order the exchange answered: accepted (with its id and status) or rejected (with its code)."""

    user: str
    coid: str
    market: str
    outcome: str  # "accepted" | "rejected"
    order_id: int | None
    status: str  # open, filled, partially_filled, cancelled, ... or the reject code
    first_sent: float  # wall clock of the first attempt
    last_sent: float  # wall clock of the attempt that got the answer
    acked: float
    attempts: int


@dataclass
class Load:
    """Traders placing and cancelling crossing orders until stopped; pause() quiesces them."""

    settings: Settings
    users: dict[str, str]  # email -> access token
    period_s: float = 0.12  # per trader between actions (4 traders: ~30 actions/s)
    acks: list[Ack] = field(default_factory=list)
    unacked: list[tuple[str, str, float]] = field(default_factory=list)  # (user, coid, first attempt)
    failures: list[float] = field(default_factory=list)  # wall clock of each attempt that failed (an outage)
    errors: list[str] = field(default_factory=list)  # anything a trader did not expect
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.paused = threading.Event()
        self.traders = [Trader(self, email, token, seed) for seed, (email, token) in enumerate(self.users.items())]

    def start(self) -> None:
        for t in self.traders:
            t.start()

    def pause(self) -> None:
        """Stop new actions and wait until every trader finished its current one (retries included)."""
        self.paused.set()
        for t in self.traders:
            with t.busy:
                pass

    def resume(self) -> None:
        self.paused.clear()

    def stop(self) -> None:
        self.stopped.set()
        self.paused.set()
        for t in self.traders:
            t.join(RETRY_FOR_S + 15)

    def record(self, ack: Ack) -> None:
        with self.lock:
            self.acks.append(ack)

    def snapshot(self) -> list[Ack]:
        with self.lock:
            return list(self.acks)

    def first_ack_after(self, t: float) -> Ack | None:
        """The first answer to an attempt sent at or after ``t`` (so it went through the recovered path)."""
        fresh = [a for a in self.snapshot() if a.last_sent >= t]
        return min(fresh, key=lambda a: a.acked) if fresh else None


class Trader(threading.Thread):
    """One user: limit orders around 100 (so they cross), market orders and cancels."""

    def __init__(self, load: Load, email: str, token: str, seed: int) -> None:
        super().__init__(name=f"trader-{email}", daemon=True)
        self.load, self.email, self.token = load, email, token
        self.rng = random.Random(seed)
        self.tag = email.split("@")[0]
        self.busy = threading.Lock()
        self.open: dict[int, str] = {}  # order id -> market, as far as this trader knows
        self.n = 0

    def run(self) -> None:
        with GatewayClient(self.load.settings, token=self.token) as gw:
            while not self.load.stopped.is_set():
                with self.busy:
                    acted = not self.load.paused.is_set()
                    if acted:
                        try:
                            self.step(gw)
                        except Exception as exc:  # a bug in the test or an answer nobody expects
                            self.load.errors.append(f"{self.email}: {exc.__class__.__name__}: {exc}")
                time.sleep(self.load.period_s * self.rng.uniform(0.5, 1.5) if acted else 0.02)

    def step(self, gw: GatewayClient) -> None:
        r = self.rng.random()
        if self.open and (r < 0.2 or len(self.open) > MAX_OPEN):
            oid = self.rng.choice(list(self.open))
            market = self.open.pop(oid)
            sent = time.time()
            try:
                gw.cancel(oid, market)
                self.load.counts["cancels"] += 1
            except ServiceUnavailable:  # not retried: a new cancel would be a new command anyway
                self.load.failures.append(sent)
            except StockctlError:  # filled meanwhile (404): not ours to track any more
                self.load.counts["cancels_failed"] += 1
            return
        self.n += 1
        body: dict[str, Any] = {
            "market": MARKETS[0] if self.rng.random() < 0.8 else MARKETS[1],
            "side": self.rng.choice(("buy", "sell")),
            "qty": str(self.rng.randint(1, 3)),
            "client_order_id": f"{self.tag}-{self.n}",
        }
        if r >= 0.35:  # else a market order
            body["price"] = str(Decimal(100) + Decimal(self.rng.randint(-4, 4)) * Decimal("0.05"))
        self.submit(gw, body)

    def submit(self, gw: GatewayClient, body: dict[str, Any]) -> None:
        first = time.time()
        attempts = 0
        while True:
            attempts += 1
            sent = time.time()
            try:
                resp = gw.place(body)
            except OrderRejected as exc:
                outcome, oid, status = "rejected", None, exc.code
                break
            except ServiceUnavailable:
                self.load.failures.append(sent)
                if time.time() - first > RETRY_FOR_S or self.load.stopped.is_set():
                    self.load.unacked.append((self.email, body["client_order_id"], first))
                    return
                time.sleep(0.2)
                continue
            outcome, oid, status = "accepted", int(resp["order_id"]), str(resp["status"])
            if status in ("open", "partially_filled"):
                self.open[oid] = body["market"]
            break
        self.load.record(
            Ack(
                self.email,
                body["client_order_id"],
                body["market"],
                outcome,
                oid,
                status,
                first,
                sent,
                time.time(),
                attempts,
            )
        )


# --- WebSocket ------------------------------------------------------------------------------


class Watcher(threading.Thread):
    """stockctl.sdk.stream.stream on ``channels``, in its own event loop; records arrival times."""

    def __init__(self, settings: Settings, token: str, channels: list[str]) -> None:
        super().__init__(name="ws-watcher", daemon=True)
        self.settings, self.token, self.channels = settings, token, channels
        self.quotes: list[tuple[float, int]] = []  # (received, quote ts ns), snapshots included
        self.snapshots: list[tuple[float, str]] = []  # (received, channel): one per (re)subscription
        self.order_events: list[float] = []
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # the client gave up: the test reports it
            self.failure = exc

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()  # type: ignore[assignment]
        async for kind, channel, data in stream(self.settings, self.channels, token=self.token):
            now = time.time()
            if kind == "snapshot":
                self.snapshots.append((now, channel))
            if channel.startswith("quotes:"):
                self.quotes.append((now, msgspec.json.decode(data, type=Quote).ts))
            elif kind == "order_event":
                self.order_events.append(now)

    def first_quote_after(self, t: float) -> float | None:
        """When the first quote of a tick published after ``t`` arrived."""
        t_ns = int(t * 1e9)
        return next((recv for recv, ts in list(self.quotes) if recv >= t and ts >= t_ns), None)

    def resubscribed_after(self, t: float) -> float | None:
        """When every channel had sent a fresh snapshot after ``t`` (a reconnect and resubscribe)."""
        seen: dict[str, float] = {}
        for recv, channel in list(self.snapshots):
            if recv >= t:
                seen.setdefault(channel, recv)
        return max(seen.values()) if set(seen) >= set(self.channels) else None

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self.join(10)


# --- the logs and their independent replay ----------------------------------------------------


async def read_stream(js: JetStreamContext, stream_name: str, subjects: str, start: int) -> list[tuple[int, bytes]]:
    """(stream seq, data) of every message from ``start`` on, through a short-lived pull consumer."""
    info = await js.stream_info(stream_name)
    if info.state.last_seq < start:
        return []
    config = api.ConsumerConfig(
        filter_subject=subjects,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    consumer = await js.add_consumer(stream_name, config)
    sub = await js.pull_subscribe_bind(consumer=consumer.name, stream=stream_name)
    out: list[tuple[int, bytes]] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(2000, timeout=1.0)
            except nats.errors.TimeoutError:
                break
            out.extend((m.metadata.sequence.stream, m.data) for m in msgs)
            if not msgs or msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
        await js.delete_consumer(stream_name, consumer.name)
    return out


def event_market(ev: Event) -> str:
    return ev.market or names.ACCOUNTS_MARKET


def is_zero(text: str) -> bool:
    return Decimal(text) == 0


class Ledger:
    """What the exchange must be: EX_ORDERS replayed into a fresh engine, beside EX_EVENTS as stored."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.engine = Exchange()
        self.cmd_next = self.ev_next = self.tick_next = 1
        self.commands = 0
        self.expected: dict[str, list[bytes]] = defaultdict(list)  # market -> replayed events, encoded
        self.stored: dict[str, list[bytes]] = defaultdict(list)  # market -> stored events, as stored
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (user, client order id) -> accepted/rejected events
        self.accepted_id: dict[tuple[str, str], int] = {}
        self.terminal: Counter[int] = Counter()  # order id -> events that ended it (filled, cancelled)
        self.trade_ids: Counter[int] = Counter()
        self.trades: list[Trade] = []
        self.funded: dict[str, dict[str, str]] = {}
        self.ticks: dict[str, list[Tick]] = defaultdict(list)

    def sync(self) -> int:
        """Read what is new in the three streams; returns how many new commands there were.

        On a cluster the JetStream API answers 503 for a moment after a node comes back (its
        meta leader may change): asked again for up to 30 s. A stream read is applied whole or
        not at all, so a retry goes on from where the last one stopped."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return asyncio.run(self._sync())
            except STREAM_UNAVAILABLE:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    async def _sync(self) -> int:
        nc = await nats.connect(**nats_options(self.nats_url), connect_timeout=5, max_reconnect_attempts=5)
        try:
            js = nc.jetstream()
            cmds = await read_stream(js, names.ORDER_STREAM, names.ORDER_SUBJECTS, self.cmd_next)
            for seq, data in cmds:
                for ev in self.engine.apply(command_decoder.decode(data)):
                    self.expected[event_market(ev)].append(ex_encode(ev))
                self.cmd_next = seq + 1
            self.commands += len(cmds)
            for seq, record in await read_stream(js, names.EVENT_STREAM, names.EVENT_SUBJECTS, self.ev_next):
                # A record holds one market's events of a batch; each is compared on its own.
                for data in split_record(record):
                    self._learn(event_decoder.decode(data), data)
                self.ev_next = seq + 1
            for seq, data in await read_stream(js, names.TICK_STREAM, names.TICK_SUBJECTS, self.tick_next):
                tick = tick_decoder.decode(data)
                self.ticks[tick.symbol].append(tick)
                self.tick_next = seq + 1
            return len(cmds)
        finally:
            await nc.close()

    def _learn(self, ev: Event, data: bytes) -> None:
        self.stored[event_market(ev)].append(data)
        if isinstance(ev, Accepted):
            self.outcomes[(ev.user, ev.client_order_id)] += 1
            self.accepted_id[(ev.user, ev.client_order_id)] = ev.order_id
        elif isinstance(ev, Rejected):
            self.outcomes[(ev.user, ev.client_order_id)] += 1
        elif isinstance(ev, Trade):
            self.trade_ids[ev.trade_id] += 1
            self.trades.append(ev)
            if is_zero(ev.maker_remaining):
                self.terminal[ev.maker_order_id] += 1
            if is_zero(ev.taker_remaining):
                self.terminal[ev.taker_order_id] += 1
        elif isinstance(ev, Cancelled):
            self.terminal[ev.order_id] += 1
        elif isinstance(ev, Funded):
            self.funded[ev.user] = ev.amounts

    def caught_up(self) -> bool:
        """Matching has stored an outcome for every command of the log (as far as it was read)."""
        markets = set(self.expected) | set(self.stored)
        return all(len(self.stored[m]) >= len(self.expected[m]) for m in markets)

    def settle(self, timeout: float = 40.0) -> None:
        """Read until the log stops growing and matching has processed all of it."""
        deadline = time.monotonic() + timeout
        while True:
            new = self.sync()
            if not new and self.caught_up():
                return
            if time.monotonic() > deadline:
                missing = {m: len(self.expected[m]) - len(self.stored[m]) for m in self.expected}
                raise AssertionError(f"matching did not catch up with the command log within {timeout}s: {missing}")
            time.sleep(0.1)

    def event_mismatches(self) -> list[str]:
        """Markets whose stored events differ from the replay, with the first difference."""
        out = []
        for m in sorted(set(self.expected) | set(self.stored)):
            exp, got = self.expected[m], self.stored[m]
            if exp != got:
                i = next((i for i, (a, b) in enumerate(zip(exp, got, strict=False)) if a != b), min(len(exp), len(got)))
                out.append(
                    f"{m}: {len(got)} stored vs {len(exp)} replayed events; first difference at #{i}:"
                    f" stored {got[i] if i < len(got) else None!r} replayed {exp[i] if i < len(exp) else None!r}"
                )
        return out


async def matching_query(nats_url: str, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Ask the matching daemon directly (core NATS request/reply), as the gateway does."""
    nc = await nats.connect(**nats_options(nats_url), connect_timeout=5)
    try:
        out = []
        for what, payload in requests:
            resp = await nc.request(names.query_subject(what), msgspec.json.encode(payload), timeout=5)
            out.append(msgspec.json.decode(resp.data))
        return out
    finally:
        await nc.close()


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Like tests.conftest.wait_for, but returns None on timeout instead of failing."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain-text table: ``columns`` is (key, heading)."""
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(cells):
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(padded))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
