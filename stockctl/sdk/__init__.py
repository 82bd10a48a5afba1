"""stockctl's Python SDK: an async, typed client of a running instance, for bots.

::

    import asyncio
    from decimal import Decimal
    from stockctl.sdk import Client

    async def main() -> None:
        async with Client(email="ada@example.com", password="correct horse battery staple") as c:
            rules = await c.rules("TATA_INR")                 # tick 0.05, lot 1
            placed = await c.buy("TATA_INR", 2, Decimal("950.03"))  # sent as 2 @ 950.00
            async for book in c.book("TATA_INR"):             # a local book, kept in sync
                print(book.best_bid, book.best_ask)
                break
            await c.cancel(placed.order_id)

    asyncio.run(main())

* :class:`Client` (:mod:`stockctl.sdk.client`): REST calls and live iterators; log in with an
  email and password, a token, or the CLI's stored login; the token renews itself.
* :class:`SyncClient` (:mod:`stockctl.sdk.sync`): the same, blocking.
* :class:`LocalBook` (:mod:`stockctl.sdk.book`), :class:`MarketRules` (:mod:`stockctl.sdk.rules`).
* Types of every frame and answer: :mod:`stockctl.sdk.types`.
* The WebSocket loop every stockctl client shares: :mod:`stockctl.sdk.stream`.
* Small helpers for example bots (arguments, a P&L summary): :mod:`stockctl.sdk.bots`.
"""

from __future__ import annotations

from stockctl.client.api import OrderRejected
from stockctl.client.credentials import NotLoggedIn
from stockctl.errors import NotFound, ServiceUnavailable, StockctlError, UsageError
from stockctl.sdk.book import LocalBook
from stockctl.sdk.client import Client
from stockctl.sdk.rules import MarketRules
from stockctl.sdk.stream import Endpoints, live_frames, stream
from stockctl.sdk.sync import SyncClient

__all__ = [
    "Client",
    "Endpoints",
    "LocalBook",
    "MarketRules",
    "NotFound",
    "NotLoggedIn",
    "OrderRejected",
    "ServiceUnavailable",
    "StockctlError",
    "SyncClient",
    "UsageError",
    "live_frames",
    "stream",
]
