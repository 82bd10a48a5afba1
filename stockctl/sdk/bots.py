"""What every example bot shares: its command line, its login, its time limit and its summary.

A bot is one coroutine ``trade(client, args)``; :func:`run` parses the common arguments, logs
in, runs it for ``--seconds``, cancels what it left open, and prints one summary line::

    sma_crossover: orders=9 fills=7 position=-3 TATA pnl=-2.8590 INR renewals=4 seconds=30.0

Login (:func:`client_for`): ``--email`` (password from ``--password``, or asked for) logs in;
``--stored-login`` uses ``stockctl login``'s session; neither registers a fresh demo account
(funded on first use). The instance is found as the CLI finds it (``STOCKCTL_HOME``'s
``run/instance.json``), or at ``--url``.

P&L (:class:`Book` of fills) is exact Decimal arithmetic over this run's fills: cash from
sells minus buys minus fees (in the quote asset), plus the position marked at the last trade.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from stockctl.errors import StockctlError
from stockctl.sdk.client import Client
from stockctl.sdk.types import Fill

Trade = Callable[[Client, argparse.Namespace], Awaitable[None]]


def parser(description: str) -> argparse.ArgumentParser:
    """The arguments every bot takes; a bot adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seconds", type=float, default=60.0, help="stop after this long (default 60)")
    p.add_argument("--market", default="TATA_INR", help="exchange market to trade (default TATA_INR)")
    p.add_argument("--url", action="append", help="gateway base URL (repeat for failover); default: the instance")
    p.add_argument("--email", help="log in as this account (default: register a fresh demo account)")
    p.add_argument("--password", help="its password (default: asked for)")
    p.add_argument("--stored-login", action="store_true", help="use the login of `stockctl login`")
    return p


def client_for(args: argparse.Namespace) -> Client:
    """A client for the bot's arguments (see the module's docstring)."""
    if args.stored_login:
        return Client(args.url)
    if args.email:
        password = args.password or getpass.getpass(f"password for {args.email}: ")
        return Client(args.url, email=args.email, password=password)
    email = f"bot-{secrets.token_hex(5)}@example.com"
    return Client(args.url, email=email, password=secrets.token_urlsafe(18), register=True)


@dataclass
class Book:
    """Position, cash and fees of a list of fills in one market (exact)."""

    position: Decimal = Decimal(0)
    cash: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    count: int = 0
    seen: set[int] = field(default_factory=set)

    def add(self, fills: Iterable[Fill]) -> Book:
        for f in fills:
            if f.trade_id in self.seen:
                continue
            self.seen.add(f.trade_id)
            qty, price, sign = Decimal(f.qty), Decimal(f.price), 1 if f.side == "buy" else -1
            self.position += sign * qty
            self.cash -= sign * qty * price
            self.fees += Decimal(f.fee)
            self.count += 1
        return self

    def pnl(self, mark: Decimal) -> Decimal:
        """Cash after fees plus the position valued at ``mark``."""
        return self.cash - self.fees + self.position * mark


async def position(client: Client, market: str, since_ns: int) -> Decimal:
    """The bot's position in ``market`` from its fills since ``since_ns`` (REST)."""
    return Book().add(f for f in await client.fills(1000) if f.market == market and f.ts >= since_ns).position


async def summary(client: Client, name: str, market: str, since_ns: int, seconds: float) -> str:
    """The closing line: orders placed, fills, position and P&L at the last trade price."""
    rules = await client.rules(market)
    book = Book().add(f for f in await client.fills(1000) if f.market == market and f.ts >= since_ns)
    trades = await client.recent_trades(market, 1)
    mark = Decimal(trades[-1].price) if trades else Decimal(0)
    return (
        f"{name}: orders={client.orders_placed} fills={book.count} position={book.position:+} {rules.spec.base}"
        f" pnl={book.pnl(mark)} {rules.spec.quote} renewals={client.renewals} seconds={seconds:.1f}"
    )


async def _main(name: str, trade: Trade, args: argparse.Namespace) -> str:
    async with client_for(args) as client:
        since, start = time.time_ns(), time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(trade(client, args), args.seconds)
        await client.cancel_all(args.market)
        return await summary(client, name, args.market, since, time.monotonic() - start)


def run(trade: Trade, p: argparse.ArgumentParser) -> None:
    """Parse the arguments, run ``trade`` for ``--seconds``, print the summary (errors: one line, exit code)."""
    args = p.parse_args()
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    try:
        print(asyncio.run(_main(name, trade, args)), flush=True)
    except StockctlError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
