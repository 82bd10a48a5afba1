"""Market maker: quotes a bid and an ask at the top of the book, within an inventory limit.

    python examples/market_maker.py --seconds 60 [--size 1] [--max-position 5] [--every 1]

Every ``--every`` seconds it cancels its quotes, reads the book (then free of its own orders)
and posts post-only orders at the best bid and ask. When the spread allows, it improves by one
tick the side that brings its inventory back toward zero. At ``+max`` it stops bidding, at
``-max`` it stops offering. Prints one summary line: orders, fills, position and P&L.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from stockctl.sdk import Client, OrderRejected
from stockctl.sdk.bots import parser, position, run


async def trade(client: Client, args: argparse.Namespace) -> None:
    rules = await client.rules(args.market)
    since, size, limit = time.time_ns(), rules.qty(args.size), rules.qty(args.max_position)
    while True:
        await client.cancel_all(args.market)
        held = await position(client, args.market, since)
        book = await client.book_snapshot(args.market)
        if book.bids and book.asks:
            bid, ask = rules.price(book.bids[0].price), rules.price(book.asks[0].price)
            if ask - bid >= rules.ticks(2):  # room inside the spread: lean against the inventory
                if held > 0:
                    ask -= rules.tick
                else:
                    bid += rules.tick
            quotes = []
            if held + size <= limit:
                quotes.append(("buy", bid))
            if held - size >= -limit:
                quotes.append(("sell", ask))
            for side, price in quotes:
                try:
                    await client.order(args.market, side, size, price, post_only=True)
                except OrderRejected as exc:  # the book moved under us (post-only would cross)
                    print(f"{side} @ {price}: {exc}", flush=True)
            print(f"position {held:+}: quoting {' / '.join(f'{s} {p}' for s, p in quotes)}", flush=True)
        await asyncio.sleep(args.every)


if __name__ == "__main__":
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--size", default="1", help="quantity of each quote (default 1)")
    p.add_argument("--max-position", default="5", help="inventory limit either way (default 5)")
    p.add_argument("--every", type=float, default=1.0, help="seconds between re-quotes (default 1)")
    run(trade, p)
