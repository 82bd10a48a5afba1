"""How ``bench orders`` makes and sends orders: the seeded order flow, and submitters that
send them straight onto NATS or through the gateway's HTTP API, each answer timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from stockctl.bench.kit import (
    BenchError,
    LiveOrders,
    ProgressFn,
    price_text,
    wait_until,
)
from stockctl.errors import UsageError
from stockctl.wire import names
from stockctl.wire.exchange import (
    Accepted,
    Cancel,
    Cancelled,
    Event,
    Fund,
    Funded,
    MarketSpec,
    Place,
    Rejected,
    Trade,
    encode,
)

DEFAULT_SEED = 7
PASSIVE_SHARE = 0.45
CROSS_SHARE = 0.30
"""The rest (25%) are cancels of the driver's live orders."""
MID_TICKS = 2_000
"""Starting mid of every market, in ticks (100.00 at a 0.05 tick)."""
MAX_PENDING = 50_000
MSG_ID = "Nats-Msg-Id"
BENCH_ASSET_UNITS = {"INR": "1000000000", "USD": "1000000000"}
"""Funding per bench user; any other asset gets BENCH_BASE_UNITS."""
BENCH_BASE_UNITS = "10000000"


# --- the order flow ----------------------------------------------------------------------


class OrderFlow:
    """Seeded commands: passive limits near a drifting mid, crossing limits, cancels of live orders.

    Live orders are learnt from the replies (:meth:`observe`), so cancels name real orders;
    an order cancelled, or filled, while its cancel is in flight gives ``unknown_order``.
    """

    def __init__(self, users: Sequence[str], markets: Sequence[MarketSpec], seed: int = DEFAULT_SEED) -> None:
        if not users:
            raise UsageError("at least one bench user is needed")
        self.rng = random.Random(seed)
        self.users = list(users)
        self.markets = [m.symbol for m in markets]
        self.tick_size = {m.symbol: m.tick_size for m in markets}
        self.mid = dict.fromkeys(self.markets, MID_TICKS)
        self.prices: dict[tuple[str, int], str] = {}
        self.live = LiveOrders()
        self.n = 0
        self.sent: Counter[str] = Counter()
        self.outcome: Counter[str] = Counter()

    def price(self, market: str, ticks: int) -> str:
        key = (market, ticks)
        text = self.prices.get(key)
        if text is None:
            text = self.prices[key] = price_text(ticks, self.tick_size[market])
        return text

    def next(self, ts: int) -> Place | Cancel:
        self.n += 1
        n = self.n
        rng = self.rng
        u = rng.random()
        live = self.live
        if u >= PASSIVE_SHARE + CROSS_SHARE and live.ids:
            oid = live.ids[rng.randrange(len(live.ids))]
            user, market = live.owner[oid]
            live.discard(oid)  # never cancelled twice
            self.sent["cancel"] += 1
            return Cancel(user, f"x{n}", market, oid, ts)
        market = self.markets[rng.randrange(len(self.markets))]
        if n % 128 == 0:
            self.mid[market] = min(max(self.mid[market] + rng.randint(-1, 1), MID_TICKS - 200), MID_TICKS + 200)
        mid = self.mid[market]
        is_buy = rng.random() < 0.5
        side = "buy" if is_buy else "sell"
        user = self.users[rng.randrange(len(self.users))]
        if u < PASSIVE_SHARE or u >= PASSIVE_SHARE + CROSS_SHARE:
            off = rng.randint(1, 8)
            ticks = mid - off if is_buy else mid + off
            self.sent["passive"] += 1
            return Place(user, f"o{n}", market, side, "limit", str(rng.randint(1, 10)), ts, self.price(market, ticks))
        off = rng.randint(1, 3)
        ticks = mid + off if is_buy else mid - off
        tif = "ioc" if rng.random() < 0.5 else "gtc"
        self.sent["cross"] += 1
        return Place(
            user, f"o{n}", market, side, "limit", str(rng.randint(1, 6)), ts, self.price(market, ticks), tif=tif
        )

    def observe(self, events: Sequence[Event]) -> None:
        """One reply's events: keep the live orders and the outcome counts."""
        live, outcome = self.live, self.outcome
        for ev in events:
            live.observe(ev)
            if isinstance(ev, Trade):
                outcome["trades"] += 1
            elif isinstance(ev, Accepted):
                outcome["accepted"] += 1
            elif isinstance(ev, Cancelled):
                outcome[f"cancelled_{ev.reason}"] += 1
            elif isinstance(ev, Rejected):
                outcome[f"rejected_{ev.code}"] += 1
            elif isinstance(ev, Funded):
                outcome["funded"] += 1


def fund_command(user: str, markets: Sequence[MarketSpec]) -> Fund:
    assets = sorted({m.base for m in markets} | {m.quote for m in markets})
    return Fund(user, "fund", {a: BENCH_ASSET_UNITS.get(a, BENCH_BASE_UNITS) for a in assets}, time.time_ns())


# --- submitters --------------------------------------------------------------------------

_events_decoder = msgspec.json.Decoder(list[Event])


class _HttpReply(msgspec.Struct):
    events: list[dict[str, Any]] = []


_http_decoder = msgspec.json.Decoder(_HttpReply)

# The gateway shows a trade with the taker's side only (nobody learns the other side), so
# the maker's fields come back empty here; the maker order is dropped from the live set
# when a later cancel of it is refused as unknown.
_HIDDEN_MAKER = {
    "maker_user": "",
    "maker_order_id": 0,
    "maker_client_order_id": "",
    "maker_remaining": "?",
    "maker_fee": "0",
}


def _http_events(body: bytes) -> list[Event]:
    out: list[Event] = []
    for doc in _http_decoder.decode(body).events:
        if doc.get("event") == "trade":
            doc = {**_HIDDEN_MAKER, **doc}
        out.append(msgspec.convert(doc, Event))
    return out


class Submitter:
    """What both paths share: latencies, acks, errors, and the wait for outstanding commands."""

    def __init__(self, flow: OrderFlow) -> None:
        self.flow = flow
        self.latencies: list[int] = []
        self.acked = 0
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.first_send = 0
        self.last_ack = 0

    @property
    def outstanding(self) -> int:
        raise NotImplementedError

    async def submit(self, cmd: Place | Cancel | Fund, key: str) -> None:
        raise NotImplementedError

    def reap(self) -> None:
        """Look at publish errors that arrived (a no-op where errors are seen at once)."""

    def reset(self) -> None:
        self.latencies = []
        self.acked = 0
        self.errors = 0
        self.first_send = 0
        self.last_ack = 0

    def _acked(self, t0: int, now: int, events: Sequence[Event]) -> None:
        self.latencies.append(now - t0)
        self.acked += 1
        self.last_ack = now
        self.flow.observe(events)

    async def drain(self, timeout: float, progress: ProgressFn, label: str) -> tuple[bool, float]:
        """Wait until every submitted command is answered (or failed)."""

        def answered() -> bool:
            self.reap()
            return self.outstanding <= 0

        return await wait_until(
            answered, timeout, lambda: progress(f"{label}: draining, {self.outstanding:,} awaiting their reply"), 0.002
        )

    async def close(self) -> None:
        pass


class NatsSubmitter(Submitter):
    """The gateway's path: JetStream publish with a reply inbox; one wildcard subscription."""

    def __init__(self, nc: NATS, flow: OrderFlow) -> None:
        super().__init__(flow)
        self.nc = nc
        self.js = nc.jetstream(publish_async_max_pending=MAX_PENDING)
        self.prefix = ""
        self.ids = itertools.count(1)
        self.pending: dict[str, int] = {}
        self._acks: list[tuple[asyncio.Future[Any], str]] = []

    async def start(self) -> None:
        self.prefix = self.nc.new_inbox()
        await self.nc.subscribe(
            self.prefix + ".*", cb=self._on_reply, pending_msgs_limit=2_000_000, pending_bytes_limit=1 << 30
        )
        await self.nc.flush()

    @property
    def outstanding(self) -> int:
        return len(self.pending)

    async def _on_reply(self, msg: Msg) -> None:
        now = time.perf_counter_ns()
        t0 = self.pending.pop(msg.subject, None)
        if t0 is None:
            return
        try:
            events = _events_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.errors += 1
            self.error_kinds["bad reply"] += 1
            return
        self._acked(t0, now, events)

    async def submit(self, cmd: Place | Cancel | Fund, key: str) -> None:
        t0 = time.perf_counter_ns()
        if not self.first_send:
            self.first_send = t0
        inbox = f"{self.prefix}.{next(self.ids)}"
        market = cmd.market or names.ACCOUNTS_MARKET
        headers = {MSG_ID: f"{cmd.user}:{key}", names.REPLY_HEADER: inbox}
        self.pending[inbox] = t0
        try:
            fut = await self.js.publish_async(names.order_subject(market), encode(cmd), headers=headers)
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            self.pending.pop(inbox, None)
            self.errors += 1
            self.error_kinds[exc.__class__.__name__] += 1
            return
        self._acks.append((fut, inbox))

    def reap(self) -> None:
        keep = []
        for fut, inbox in self._acks:
            if not fut.done():
                keep.append((fut, inbox))
            elif fut.cancelled() or fut.exception() is not None:
                exc = None if fut.cancelled() else fut.exception()
                self.error_kinds[exc.__class__.__name__ if exc else "cancelled"] += 1
                self.errors += 1
                self.pending.pop(inbox, None)
        self._acks = keep


class _HttpConn:
    """One keep-alive HTTP/1.1 connection: a request at a time, Content-Length bodies only."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        assert reader is not None
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif key == b"transfer-encoding":
                    raise ValueError("chunked responses are not supported")
            body = await reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class HttpSubmitter(Submitter):
    """The public path: ``POST /api/v1/orders`` and ``DELETE /api/v1/orders/{id}`` on the gateway."""

    def __init__(self, host: str, port: int, tokens: dict[str, str], flow: OrderFlow, connections: int) -> None:
        super().__init__(flow)
        self.host, self.port = host, port
        self.auth = {user: f"Authorization: Bearer {token}\r\n".encode() for user, token in tokens.items()}
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.connections = connections
        self.tasks: list[asyncio.Task[None]] = []
        self.inflight = 0

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self._worker()) for _ in range(self.connections)]

    @property
    def outstanding(self) -> int:
        return self.inflight

    def _raw(self, cmd: Place | Cancel | Fund) -> bytes:
        host = f"Host: {self.host}:{self.port}\r\n".encode()
        auth = self.auth[cmd.user]
        if isinstance(cmd, Place):
            body = encode(
                {
                    "market": cmd.market,
                    "side": cmd.side,
                    "type": cmd.type,
                    "qty": cmd.qty,
                    "price": cmd.price,
                    "tif": cmd.tif,
                    "client_order_id": cmd.client_order_id,
                }
            )
            return (
                b"POST /api/v1/orders HTTP/1.1\r\n" + host + auth + b"Content-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        if isinstance(cmd, Cancel):
            path = f"/api/v1/orders/{cmd.order_id}?market={cmd.market}".encode()
            return b"DELETE " + path + b" HTTP/1.1\r\n" + host + auth + b"Content-Length: 0\r\n\r\n"
        raise BenchError("the gateway funds its users itself")

    async def submit(self, cmd: Place | Cancel | Fund, key: str) -> None:
        t0 = time.perf_counter_ns()  # the open-loop send time: a wait for a free connection counts
        if not self.first_send:
            self.first_send = t0
        self.inflight += 1
        self.queue.put_nowait((t0, self._raw(cmd)))

    async def _worker(self) -> None:
        conn = _HttpConn(self.host, self.port)
        try:
            while True:
                t0, raw = await self.queue.get()
                try:
                    status, body = await asyncio.wait_for(conn.request(raw), 15)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
                    self.inflight -= 1
                    self.errors += 1
                    self.error_kinds[e.__class__.__name__] += 1
                    continue
                now = time.perf_counter_ns()
                self.inflight -= 1
                if status in (200, 201, 404, 422):  # an answer from the engine's events (404: unknown order)
                    try:
                        events = _http_events(body)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        events = []
                    self._acked(t0, now, events)
                    if status == 404:
                        self.flow.outcome["rejected_unknown_order"] += 1
                else:
                    self.errors += 1
                    self.error_kinds[f"HTTP {status}"] += 1
        finally:
            conn.close()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
