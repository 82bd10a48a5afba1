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

The endpoints form one ``nats.micro`` service, ``stockctl-matching``, so the standard
``$SRV`` PING / INFO / STATS requests (``nats micro ls``, ``nats micro stats``) find them
and count requests and processing time per endpoint. The subjects stay ``ex.query.<what>``;
micro subscribes them in a queue group, which changes nothing with the one matching daemon
there is. A bad query's answer also carries micro's ``Nats-Service-Error`` headers (code
``400``). An unexpected failure is logged and not answered, as before: micro's own error
reply would have an empty body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Protocol

import msgspec
import nats.micro
from nats.aio.client import Client as NATS
from nats.micro.request import Handler, Request
from nats.micro.service import Service

from daemons.matching.book_feed import BOOK_DEPTH, BookFeed
from stockctl import __version__
from stockctl.exchange.engine import Exchange
from stockctl.wire import names
from stockctl.wire.marketdata import encode

log = logging.getLogger("stockctl.matching")

SERVICE_NAME = "stockctl-matching"  # `nats micro info stockctl-matching` lists the endpoints and their stats
QUEUE_GROUP = "matching"  # micro always subscribes in a queue group; one matching daemon runs
STOP_TIMEOUT_S = 2.0
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


async def serve_queries(stack: AsyncExitStack, nc: NATS, state: QueryState, group: str) -> Service:
    """Start the endpoints as one micro service; ``stack`` stops it on the way out.

    The stop is registered first, so endpoints added before a failure are stopped too.
    """
    service = await nats.micro.add_service(
        nc,
        name=SERVICE_NAME,
        version=__version__,
        description="stockctl matching engine: balances, open orders, books, command outcomes, markets",
        queue_group=QUEUE_GROUP,
    )
    stack.push_async_callback(_stop, nc, service)
    for what, handler in Queries(state).handlers().items():
        await service.add_endpoint(
            name=what, subject=names.query_subject(what, group), handler=_endpoint(what, handler)
        )
    return service


async def _stop(nc: NATS, service: Service) -> None:
    """Stop answering before the connection drains; bounded, as it flushes to the server."""
    if not nc.is_connected:
        return  # NATS away: a flush would wait in vain, and closing the connection drops the subscriptions
    try:
        await asyncio.wait_for(service.stop(), STOP_TIMEOUT_S)
    except Exception as exc:  # shutting down either way
        log.warning("query service not stopped cleanly (%s: %s)", exc.__class__.__name__, exc)


def _endpoint(what: str, handler: Callable[[bytes], bytes]) -> Handler:
    async def run(request: Request) -> None:
        try:
            answer = handler(request.data)
        except BAD_QUERY as exc:
            # The body requesters read, plus micro's error headers. The detail stays out of the
            # headers: an exception's text may hold a line break, which a header cannot.
            body = encode({"error": "bad_query", "detail": str(exc)})
            with contextlib.suppress(Exception):
                await request.respond_error("400", "bad_query", data=body)
            return
        except Exception:
            # Not answered, as before micro: the requester's timeout says matching is not
            # answering. micro's own error reply has an empty body, which requesters would
            # take for an answer.
            log.exception("query %s failed", what)
            return
        await request.respond(answer)

    return run
