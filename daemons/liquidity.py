"""liquidity: simulated market makers and a little noise flow, so a fresh exchange is alive.

A market-maker account keeps several levels of bids and asks around a reference price
that follows a random walk and leans toward the last trade; it re-quotes every second
and at once after one of its orders fills. A second account sends small market orders
now and then so trades (and so ticks, candles and signals) keep coming. Both trade
through the same command stream as everyone else: no back door into the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from contextlib import AsyncExitStack
from decimal import Decimal

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from stockctl.exchange.groups import split_funding
from stockctl.runtime.connections import open_nats
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.exchange_queries import ask_matching
from stockctl.runtime.retry import PEER_BACKOFF, retry
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import CancelAll, Fund, Place, Trade, event_decoder, split_record
from stockctl.wire.exchange import encode as ex_encode

log = logging.getLogger("stockctl.liquidity")

MAKER = "market-maker@liquidity.local"
TAKER = "noise-taker@liquidity.local"
LEVELS = 5
REQUOTE_S = 1.0
REFERENCE = {"TATA_INR": Decimal("950.00"), "JIO_INR": Decimal("250.00")}


class Quoter:
    """One market's reference price and the maker's ladder around it."""

    def __init__(self, spec: dict, rng: random.Random) -> None:
        self.market = spec["symbol"]
        self.tick = Decimal(spec["tick_size"])
        self.lot = Decimal(spec["lot_size"])
        self.ref = REFERENCE.get(self.market, Decimal("100.00"))
        self.rng = rng
        self.last_trade: Decimal | None = None

    def step(self) -> None:
        """Random walk (about 0.1% a second) pulled a quarter of the way toward the last trade."""
        ref = float(self.ref) * math.exp(self.rng.gauss(0.0, 0.001))
        if self.last_trade is not None:
            ref += (float(self.last_trade) - ref) * 0.25
        self.ref = max(self.tick * 10, (Decimal(str(ref)) / self.tick).quantize(Decimal(1)) * self.tick)

    def ladder(self) -> list[tuple[str, Decimal, Decimal]]:
        """(side, price, qty) for every level: spread of two ticks, one tick between levels."""
        out = []
        for i in range(LEVELS):
            gap = self.tick * (1 + i)
            qty = self.lot * self.rng.randint(5, 50)
            out.append(("buy", self.ref - gap, qty))
            out.append(("sell", self.ref + gap, qty))
        return out


class Liquidity(Daemon):
    """Funds its two accounts, then re-quotes every market each second (at once after a fill)."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.rng = random.Random(settings.seed if settings.seed is not None else None)
        self.quoters: dict[str, Quoter] = {}
        self.counter = int(time.time() * 1000)
        self.filled = asyncio.Event()
        self.js: JetStreamContext | None = None

    async def startup(self, stack: AsyncExitStack) -> None:
        nc = await open_nats(stack, self.ops, self.stop, log)
        self.js = nc.jetstream()

        groups = self.settings.groups()

        async def markets() -> list[dict]:
            return msgspec.json.decode(await ask_matching(nc, groups, "markets", {}, timeout=2))

        def waiting(exc: Exception, attempt: int) -> None:
            if attempt == 0:  # matching not up yet
                log.info("waiting for the matching engine (%s)", exc.__class__.__name__)

        specs = await retry(markets, stop=self.stop, on_error=waiting, backoff=PEER_BACKOFF)
        if not specs:
            self.stop.set()  # no market to quote: nothing to do
            return
        self.quoters = {s["symbol"]: Quoter(s, self.rng) for s in specs}
        # Every quote asset deep, every base asset less so: each market group funds its own.
        big = {s["quote"]: "1000000000" for s in specs} | {s["base"]: "10000000" for s in specs}
        for user in (MAKER, TAKER):
            for group, amounts in split_funding(groups, big):
                fund = Fund(user=user, request_id=f"fund-{group.name}", amounts=amounts, ts=time.time_ns())
                await self.send(group.accounts_market, fund, f"fund-{group.name}", user)
        await nc.subscribe(names.EVENT_SUBJECTS, cb=self.on_event)
        self.status.info |= {"markets": sorted(self.quoters)}

    async def main_loop(self) -> None:
        while not self.stop.is_set():
            for q in self.quoters.values():
                try:
                    await self.quote(q)
                    self.status.incr("quotes")
                except Exception as exc:  # NATS away: try again next round
                    log.warning("could not quote %s: %s", q.market, exc.__class__.__name__)
            self.filled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.filled.wait(), REQUOTE_S)

    async def quote(self, q: Quoter) -> None:
        """Cancel the maker's orders in ``q``'s market, place a fresh ladder, maybe a noise order."""
        q.step()
        self.counter += 1
        now = time.time_ns()
        cancel = f"c{self.counter}"
        await self.send(q.market, CancelAll(MAKER, cancel, q.market, now), cancel, MAKER)
        for side, price, qty in q.ladder():
            self.counter += 1
            place = Place(
                user=MAKER,
                client_order_id=f"mm{self.counter}",
                market=q.market,
                side=side,  # type: ignore[arg-type]
                type="limit",
                qty=str(qty),
                ts=now,
                price=str(price),
                tif="gtc",
            )
            await self.send(q.market, place, f"mm{self.counter}", MAKER)
        if self.rng.random() < 0.5:
            self.counter += 1
            noise = Place(
                user=TAKER,
                client_order_id=f"nt{self.counter}",
                market=q.market,
                side=self.rng.choice(("buy", "sell")),  # type: ignore[arg-type]
                type="market",
                qty=str(q.lot * self.rng.randint(1, 5)),
                ts=now,
            )
            await self.send(q.market, noise, f"nt{self.counter}", TAKER)

    async def send(self, market: str, cmd: object, key: str, user: str) -> None:
        assert self.js is not None
        await self.js.publish(names.order_subject(market), ex_encode(cmd), headers={"Nats-Msg-Id": f"{user}:{key}"})

    async def on_event(self, msg: Msg) -> None:
        """Trades of a record (one market's events of a batch) move the quoter's last price."""
        if b'{"event":"trade"' not in msg.data:
            return
        for data in split_record(msg.data):
            if not data.startswith(b'{"event":"trade"'):
                continue
            ev = event_decoder.decode(data)
            if isinstance(ev, Trade) and ev.market in self.quoters:
                self.quoters[ev.market].last_trade = Decimal(ev.price)
                if MAKER in (ev.maker_user, ev.taker_user):
                    self.filled.set()
                self.status.incr("trades")


DAEMON = Liquidity

if __name__ == "__main__":
    main("liquidity", Liquidity)
