"""A local copy of a market's book, kept from the ``book:MKT`` channel, resynced on a gap.

The channel sends a ``snapshot`` when subscribed, then feed messages: ``delta`` (changed levels
of the top 20, qty ``"0"`` for a level gone) with a per-market ``seq`` one above the last, or
a ``snapshot`` again when matching restarted (its sequence starts over). :func:`maintain`
applies them to a :class:`LocalBook`:

* a delta at or below the book's ``seq`` is already in it (it raced the snapshot): skipped;
* the next ``seq`` is applied;
* a gap (a delta further ahead: a message lost, the socket came back) fetches the book by
  REST (its ``seq`` says which deltas it holds) and goes on from there.

Prices and quantities are Decimals. Pure but for the ``fetch`` it is given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import msgspec

from stockctl.sdk.types import BookLevel, BookUpdate
from stockctl.wire.gateway import ServerFrame

_update = msgspec.json.Decoder(BookUpdate)


class LocalBook:
    """Bids and asks of one market (price -> quantity), the last trade price and the feed's ``seq``."""

    def __init__(self, market: str) -> None:
        self.market = market
        self.seq = 0
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.last: Decimal | None = None
        self.resyncs = 0
        """How many gaps were mended by a REST snapshot."""

    def reset(self, snap: BookUpdate) -> None:
        """Replace everything with a snapshot."""
        self.seq = snap.seq
        self.bids = {Decimal(lv.price): Decimal(lv.qty) for lv in snap.bids}
        self.asks = {Decimal(lv.price): Decimal(lv.qty) for lv in snap.asks}
        self._last(snap.last)

    def apply(self, delta: BookUpdate) -> None:
        """Apply the changed levels of a delta (qty 0: the level is gone) and take its ``seq``."""
        for side, levels in ((self.bids, delta.bids), (self.asks, delta.asks)):
            for lv in levels:
                price, qty = Decimal(lv.price), Decimal(lv.qty)
                if qty == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.seq = delta.seq
        self._last(delta.last)

    def _last(self, last: str | None) -> None:
        if last is not None:
            self.last = Decimal(last)

    def levels(self, side: str, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """``(price, qty)`` of ``"bids"`` or ``"asks"``, best first, the first ``n``."""
        book = self.bids if side == "bids" else self.asks
        return sorted(book.items(), reverse=side == "bids")[:n]

    @property
    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        return max(self.bids.items()) if self.bids else None

    @property
    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        return min(self.asks.items()) if self.asks else None

    @property
    def mid(self) -> Decimal | None:
        """The middle of the best bid and ask (None while a side is empty)."""
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else (bid[0] + ask[0]) / 2

    @property
    def spread(self) -> Decimal | None:
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else ask[0] - bid[0]

    def imbalance(self, n: int = 5) -> Decimal:
        """(bid qty - ask qty) / (bid qty + ask qty) over the top ``n`` levels: -1 to 1, 0 if empty."""
        bid = sum((q for _, q in self.levels("bids", n)), Decimal(0))
        ask = sum((q for _, q in self.levels("asks", n)), Decimal(0))
        return Decimal(0) if bid + ask == 0 else (bid - ask) / (bid + ask)

    def to_update(self) -> BookUpdate:
        """The book now as a snapshot document (the REST ladder's shape)."""

        def side(name: str) -> list[BookLevel]:
            return [BookLevel(format(p, "f"), format(q, "f")) for p, q in self.levels(name)]

        last = None if self.last is None else format(self.last, "f")
        return BookUpdate(self.market, self.seq, side("bids"), side("asks"), last)

    def __repr__(self) -> str:
        return f"LocalBook({self.market}, seq={self.seq}, bid={self.best_bid}, ask={self.best_ask})"


async def maintain(
    frames: AsyncIterator[ServerFrame], market: str, fetch: Callable[[], Awaitable[BookUpdate]]
) -> AsyncIterator[LocalBook]:
    """Yield the book of ``market`` after every change it takes from ``frames`` (the same
    :class:`LocalBook`, updated in place); a gap is mended with ``fetch()`` (the REST book)."""
    book = LocalBook(market)
    channel = f"book:{market}"
    started = False
    async for f in frames:
        if f.channel != channel or f.type not in ("snapshot", "book"):
            continue
        msg = _update.decode(f.data)
        if f.type == "snapshot" or msg.type == "snapshot":
            book.reset(msg)  # a (re)subscribe, or matching restarted: its sequence starts over
        elif not started or msg.seq <= book.seq:
            continue  # already in the snapshot it raced; or no snapshot yet to apply it to
        elif msg.seq == book.seq + 1:
            book.apply(msg)
        else:
            book.reset(await fetch())
            book.resyncs += 1
            if msg.seq == book.seq + 1:
                book.apply(msg)
            elif msg.seq > book.seq:
                continue  # the REST book is older still: the next delta tries again
        started = True
        yield book
