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

from stockctl.runtime.connections import open_nats
from stockctl.runtime.daemon import main, shutdown_event
from stockctl.runtime.ops import start_ops
from stockctl.runtime.retry import backoff_sleep
from stockctl.runtime.status import StatusFile
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import CancelAll, Fund, Place, Trade, event_decoder
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


async def run(settings: Settings) -> None:
    stop = shutdown_event()
    status = StatusFile(settings, "liquidity")
    rng = random.Random(settings.seed if settings.seed is not None else None)
    async with AsyncExitStack() as stack:
        # --- startup ---------------------------------------------------------------
        ops = await start_ops(stack, settings, "liquidity", status)
        nc = await open_nats(stack, ops, stop, log)
        if nc is None:
            return
        js = nc.jetstream()
        attempt = 0
        specs: list[dict] = []
        while not stop.is_set():
            try:
                resp = await nc.request(names.query_subject("markets"), b"{}", timeout=2)
                specs = msgspec.json.decode(resp.data)
                break
            except Exception as exc:  # matching not up yet
                if attempt == 0:
                    log.info("waiting for the matching engine (%s)", exc.__class__.__name__)
                await backoff_sleep(attempt, stop)
                attempt += 1
        if not specs:
            return
        quoters = {s["symbol"]: Quoter(s, rng) for s in specs}
        counter = int(time.time() * 1000)

        async def send(market: str, cmd: object, key: str, user: str) -> None:
            await js.publish(names.order_subject(market), ex_encode(cmd), headers={"Nats-Msg-Id": f"{user}:{key}"})

        big = {"INR": "1000000000", **{s["base"]: "10000000" for s in specs}}
        for user in (MAKER, TAKER):
            fund = Fund(user=user, request_id="fund", amounts=big, ts=time.time_ns())
            await send(names.ACCOUNTS_MARKET, fund, "fund", user)

        filled = asyncio.Event()

        async def on_event(msg: Msg) -> None:
            if not msg.data.startswith(b'{"event":"trade"'):
                return
            ev = event_decoder.decode(msg.data)
            if isinstance(ev, Trade) and ev.market in quoters:
                quoters[ev.market].last_trade = Decimal(ev.price)
                if MAKER in (ev.maker_user, ev.taker_user):
                    filled.set()
                status.incr("trades")

        await nc.subscribe(names.EVENT_SUBJECTS, cb=on_event)
        status.ready = True
        status.info |= {"markets": sorted(quoters)}
        status_task = asyncio.create_task(status.run(stop))
        stack.callback(status.remove)

        # --- main loop -------------------------------------------------------------
        tick = 0
        while not stop.is_set():
            tick += 1
            for q in quoters.values():
                q.step()
                counter += 1
                try:
                    now = time.time_ns()
                    await send(q.market, CancelAll(MAKER, f"c{counter}", q.market, now), f"c{counter}", MAKER)
                    for side, price, qty in q.ladder():
                        counter += 1
                        place = Place(
                            user=MAKER,
                            client_order_id=f"mm{counter}",
                            market=q.market,
                            side=side,  # type: ignore[arg-type]
                            type="limit",
                            qty=str(qty),
                            ts=now,
                            price=str(price),
                            tif="gtc",
                        )
                        await send(q.market, place, f"mm{counter}", MAKER)
                    if rng.random() < 0.5:
                        counter += 1
                        side = rng.choice(("buy", "sell"))
                        noise = Place(
                            user=TAKER,
                            client_order_id=f"nt{counter}",
                            market=q.market,
                            side=side,  # type: ignore[arg-type]
                            type="market",
                            qty=str(q.lot * rng.randint(1, 5)),
                            ts=now,
                        )
                        await send(q.market, noise, f"nt{counter}", TAKER)
                    status.incr("quotes")
                except Exception as exc:  # NATS away: try again next round
                    log.warning("could not quote %s: %s", q.market, exc.__class__.__name__)
            filled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(filled.wait(), REQUOTE_S)

        # --- shutdown --------------------------------------------------------------
        await status_task


if __name__ == "__main__":
    main("liquidity", run)
