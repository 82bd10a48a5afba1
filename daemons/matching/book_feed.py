"""matching's depth feed: ``ex.book.<MKT>`` snapshots and sequence-numbered deltas.

After every batch that touched a market, :meth:`BookFeed.publish` sends the change in its
top ``BOOK_DEPTH`` levels since the last message (core NATS, not stored): a ``snapshot``
the first time, then ``delta`` messages whose changed levels carry the new quantity, ``"0"``
for a level that is gone. Each message has the market's next ``seq`` and the last trade.

The ``book`` query answers with :meth:`BookFeed.snapshot`: the levels now and the ``seq``
of the last message sent, so a client that subscribed first can tell which deltas the
answer already holds. Sequences live in memory: they restart, with a ``snapshot`` message,
when the daemon does.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS

from stockctl.exchange.engine import Exchange
from stockctl.wire import names
from stockctl.wire.marketdata import encode

BOOK_DEPTH = 20


class BookFeed:
    """The last depth published per market, and its sequence."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}  # market -> (bids, asks): price -> qty
        self.seqs: dict[str, int] = {}

    def seq(self, market: str) -> int:
        """The sequence of the last message published for ``market`` (0: none yet)."""
        return self.seqs.get(market, 0)

    def snapshot(self, engine: Exchange, market: str, depth: int = BOOK_DEPTH) -> dict[str, Any]:
        """The book now, tagged with the feed's sequence; raises KeyError for an unknown market."""
        view = engine.book(market, depth)
        return {
            "market": market,
            "seq": self.seq(market),
            "bids": view.bids,
            "asks": view.asks,
            "last": view.last_trade,
        }

    async def publish(self, engine: Exchange, market: str) -> None:
        """A delta against the last published depth (or a full snapshot the first time)."""
        view = engine.book(market, BOOK_DEPTH)
        bids = {p: q for p, q, _ in view.bids}
        asks = {p: q for p, q, _ in view.asks}
        seq = self.seqs.get(market, 0) + 1
        self.seqs[market] = seq
        previous = self.books.get(market)
        self.books[market] = (bids, asks)
        if previous is None:
            doc: dict[str, Any] = {
                "type": "snapshot",
                "market": market,
                "seq": seq,
                "bids": view.bids,
                "asks": view.asks,
            }
        else:
            doc = {
                "type": "delta",
                "market": market,
                "seq": seq,
                "bids": _diff(previous[0], bids),
                "asks": _diff(previous[1], asks),
            }
        doc["last"] = view.last_trade
        await self.nc.publish(names.book_subject(market), encode(doc))


def _diff(old: dict[str, str], new: dict[str, str]) -> list[tuple[str, str]]:
    """Changed levels; quantity "0" means the level is gone."""
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out.extend((p, "0") for p in old if p not in new)
    return out
