"""matching's request/reply endpoints on ``ex.query.<what>`` (core NATS).

Each answers from the daemon's memory, as of the last batch applied; every payload is JSON:

- ``balances`` ``{"user"}``: ``{asset: {"available", "reserved"}}``.
- ``orders`` ``{"user", "market"?}``: the user's open orders.
- ``book`` ``{"market", "depth"?}``: the book now, with the depth feed's ``seq``
  (:meth:`~daemons.matching.book_feed.BookFeed.snapshot`).
- ``outcome`` ``{"user", "client_order_id"}``: the events of a recent command, or ``null``
  (outcomes are kept in memory only: the gateway falls back to the Redis views).
- ``markets`` ``{}``: every market's spec.

A query that does not decode, or names an unknown market, is answered
``{"error": "bad_query", "detail": ...}``. Requesters are the gateway's ``ExchangeApi``, the
liquidity daemon and the tests; they read the body only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from daemons.matching.book_feed import BOOK_DEPTH, BookFeed
from stockctl.exchange.engine import Exchange
from stockctl.wire import names
from stockctl.wire.marketdata import encode

BAD_QUERY = (msgspec.DecodeError, msgspec.ValidationError, KeyError)  # KeyError: an unknown market


class BookQuery(msgspec.Struct):
    market: str
    depth: int = BOOK_DEPTH


class UserQuery(msgspec.Struct):
    user: str
    market: str | None = None


class OutcomeQuery(msgspec.Struct):
    user: str
    client_order_id: str


class QueryState(Protocol):
    """What the queries read: the matching daemon's live state."""

    @property
    def engine(self) -> Exchange: ...

    @property
    def results(self) -> Mapping[tuple[str, str], bytes]: ...

    @property
    def book_feed(self) -> BookFeed: ...


class Queries:
    """One method per endpoint: the request body in, the answer body out (raises on a bad query)."""

    def __init__(self, state: QueryState) -> None:
        self.state = state

    def handlers(self) -> dict[str, Callable[[bytes], bytes]]:
        return {
            "balances": self.balances,
            "orders": self.orders,
            "book": self.book,
            "outcome": self.outcome,
            "markets": self.markets,
        }

    def balances(self, data: bytes) -> bytes:
        q = msgspec.json.decode(data, type=UserQuery)
        bal = self.state.engine.balances(q.user)
        return encode({a: {"available": av, "reserved": rs} for a, (av, rs) in bal.items()})

    def orders(self, data: bytes) -> bytes:
        q = msgspec.json.decode(data, type=UserQuery)
        return encode(self.state.engine.open_orders(q.user, q.market))

    def book(self, data: bytes) -> bytes:
        q = msgspec.json.decode(data, type=BookQuery)
        return encode(self.state.book_feed.snapshot(self.state.engine, q.market, q.depth))

    def outcome(self, data: bytes) -> bytes:
        q = msgspec.json.decode(data, type=OutcomeQuery)
        return self.state.results.get((q.user, q.client_order_id), b"null")

    def markets(self, data: bytes) -> bytes:
        return encode(list(self.state.engine.markets))


async def serve_queries(nc: NATS, state: QueryState) -> None:
    """Subscribe every endpoint; they are served until the connection drains."""
    for what, handler in Queries(state).handlers().items():
        await nc.subscribe(names.query_subject(what), cb=_responder(handler))


def _responder(handler: Callable[[bytes], bytes]) -> Callable[[Msg], Awaitable[None]]:
    async def run(msg: Msg) -> None:
        try:
            answer = handler(msg.data)
        except BAD_QUERY as exc:
            with contextlib.suppress(Exception):
                await msg.respond(encode({"error": "bad_query", "detail": str(exc)}))
            return
        await msg.respond(answer)

    return run
