"""Book-imbalance taker: buys when the bids outweigh the asks near the top, sells when the asks do.

    python examples/book_imbalance.py --seconds 60 [--levels 5] [--threshold 0.2] [--size 1]

It follows the market's book through the SDK's local copy (snapshot, deltas, resync on a gap).
When (bid qty - ask qty) / (bid qty + ask qty) over the top ``--levels`` passes ``--threshold``
it takes the best price on that side with an IOC order, at most once per ``--cooldown``
seconds, within ``--max-position``. Prints one summary line: orders, fills, position and P&L.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from stockctl.sdk import Client
from stockctl.sdk.bots import parser, position, run


async def trade(client: Client, args: argparse.Namespace) -> None:
    rules = await client.rules(args.market)
    since, size, limit = time.time_ns(), rules.qty(args.size), rules.qty(args.max_position)
    held, next_at = Decimal(0), 0.0
    async for book in client.book(args.market):
        if time.monotonic() < next_at or book.best_bid is None or book.best_ask is None:
            continue
        tilt = book.imbalance(args.levels)
        if tilt >= args.threshold and held + size <= limit:
            side, price = "buy", book.best_ask[0]
        elif tilt <= -args.threshold and held - size >= -limit:
            side, price = "sell", book.best_bid[0]
        else:
            continue
        result = await client.order(args.market, side, size, price, tif="ioc")
        print(f"imbalance {tilt:+.3f}: {side} {size} @ {price} -> {result.status}", flush=True)
        held = await position(client, args.market, since)
        next_at = time.monotonic() + args.cooldown


if __name__ == "__main__":
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--levels", type=int, default=5, help="levels each side to weigh (default 5)")
    p.add_argument("--threshold", type=Decimal, default=Decimal("0.2"), help="imbalance to act on (default 0.2)")
    p.add_argument("--size", default="1", help="quantity of each order (default 1)")
    p.add_argument("--max-position", default="10", help="inventory limit either way (default 10)")
    p.add_argument("--cooldown", type=float, default=1.0, help="seconds between orders (default 1)")
    run(trade, p)
