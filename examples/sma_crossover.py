"""SMA-crossover trader: long while the fast average of the market's trade prices is above the
slow one, short while below; it trades the difference with marketable IOC orders.

    python examples/sma_crossover.py --seconds 60 [--fast 5 --slow 20] [--size 2] [--signals]

With ``--signals`` it follows the server's own SMA crossover signals instead of computing its
averages from the quotes. Prints one summary line: orders, fills, position and P&L.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import AsyncIterator
from decimal import Decimal

from stockctl.sdk import Client
from stockctl.sdk.bots import parser, position, run

SLIPPAGE = Decimal("0.005")  # a marketable limit: at most 0.5% through the last price


async def trend_from_quotes(client: Client, market: str, fast: int, slow: int) -> AsyncIterator[tuple[int, Decimal]]:
    """(+1 up / -1 down, last price) on every quote once the slow window is full."""
    prices: deque[Decimal] = deque(maxlen=slow)
    async for q in client.quotes(market):
        prices.append(Decimal(q.price))
        if len(prices) == slow:
            fast_avg = sum(list(prices)[-fast:]) / fast
            slow_avg = sum(prices) / slow
            if fast_avg != slow_avg:
                yield (1 if fast_avg > slow_avg else -1), prices[-1]


async def trend_from_signals(client: Client, market: str) -> AsyncIterator[tuple[int, Decimal]]:
    """(+1 on a BUY crossover / -1 on a SELL one, its price), from the server's signals."""
    async for s in client.signals(market):
        yield (1 if s.side == "BUY" else -1), Decimal(s.price)


async def trade(client: Client, args: argparse.Namespace) -> None:
    rules = await client.rules(args.market)
    since = time.time_ns()
    held, next_at = Decimal(0), 0.0
    if args.signals:
        trends = trend_from_signals(client, args.market)
    else:
        trends = trend_from_quotes(client, args.market, args.fast, args.slow)
    async for direction, last in trends:
        want = rules.qty(args.size) * direction
        if want == held or time.monotonic() < next_at:
            continue  # no change; or too soon (its own trades move the averages too)
        side = "buy" if want > held else "sell"
        limit = last * (1 + SLIPPAGE) if side == "buy" else last * (1 - SLIPPAGE)
        result = await client.order(args.market, side, abs(want - held), limit, tif="ioc")
        print(f"{side} {abs(want - held)} @ <= {rules.price(limit, side)}: {result.status}", flush=True)
        held = await position(client, args.market, since)  # what really filled
        next_at = time.monotonic() + args.cooldown


if __name__ == "__main__":
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--fast", type=int, default=5, help="fast SMA window in quotes (default 5)")
    p.add_argument("--slow", type=int, default=20, help="slow SMA window in quotes (default 20)")
    p.add_argument("--size", type=Decimal, default=Decimal(2), help="position size each way (default 2)")
    p.add_argument("--cooldown", type=float, default=2.0, help="seconds between orders (default 2)")
    p.add_argument("--signals", action="store_true", help="follow the server's SMA signals instead")
    run(trade, p)
