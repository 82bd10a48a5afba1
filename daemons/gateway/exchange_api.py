"""The gateway's client of the matching daemon, and the answer a command's events make.

:class:`ExchangeApi` stores a command on JetStream (``ex.order.<MKT>``, de-duplicated by
``Nats-Msg-Id = user:key``) and waits for the matching daemon's reply naming the events it
stored; a resent command is answered with its recorded outcome. Queries (markets, book, open
orders, balances) are NATS requests; trades, fills and order history are read from the Redis
views. When matching does not answer in time it raises :class:`ExchangeUnavailable` (503).
Every event it returns is already the user's own view (:mod:`daemons.gateway.views`).

:func:`order_result` and :func:`amend_result` turn a command's events into the HTTP status and
body that REST, the WebSocket and the seed doors all answer with.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import Histogram

from daemons.gateway.views import concerns, fill_view, own_view
from stockctl.errors import NotFound, StockctlError, UsageError
from stockctl.exchange.groups import split_funding
from stockctl.marketdata.store import check_symbol
from stockctl.runtime.exchange_queries import ask_matching
from stockctl.runtime.logs import REQUEST_ID_HEADER, bound
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import Amend, Cancel, CancelAll, Fund, Place, expire_at_ns
from stockctl.wire.exchange import encode as ex_encode
from stockctl.wire.gateway import COID_RE, AmendIn, OrderIn, public_trade_decoder

DUPLICATE_IN_PROCESS = 10158  # JetStream: "duplicate message id is in process"


class ExchangeApi:
    """Commands to the matching daemon through JetStream; outcomes from its stored events."""

    def __init__(self, settings: Settings, nc: NATS, js: Any, r: aioredis.Redis) -> None:
        self.s, self.nc, self.js, self.r = settings, nc, js, r
        self.groups = settings.groups()  # which matching daemon holds which markets and assets
        self.funded: set[str] = set()
        self.markets: dict[str, dict[str, Any]] = {}
        self._waiters: dict[str, asyncio.Future[bytes]] = {}
        self._prefix = ""
        self._ids = itertools.count(1)
        self.ack_seconds: Histogram | None = None  # order submit -> events stored and answered

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox()
        await self.nc.subscribe(self._prefix + ".*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._waiters.pop(msg.subject, None)
        if fut is not None and not fut.done():
            fut.set_result(msg.data)

    async def query(self, what: str, payload: dict[str, Any]) -> bytes:
        """Ask the matching daemon of each market group that holds part of the answer."""
        try:
            return await ask_matching(self.nc, self.groups, what, payload, timeout=3)
        except Exception as exc:  # no responders or timeout: matching (or one group's) is down
            raise ExchangeUnavailable(
                f"the matching engine is not answering ({exc.__class__.__name__})", "try again in a moment"
            ) from None

    async def all_markets(self) -> list[str]:
        if not self.markets:
            specs = msgspec.json.decode(await self.query("markets", {}))
            self.markets = {m["symbol"]: m for m in specs}
        return sorted(self.markets)

    async def known_market(self, market: str) -> str:
        mkt = check_symbol(market)
        if mkt not in await self.all_markets():
            raise NotFound(f"unknown market {mkt}", f"known markets: {', '.join(sorted(self.markets))}")
        return mkt

    async def submit(self, market: str, cmd: Any, key: str, user: str) -> list[dict[str, Any]]:
        """Store a command; return its events once the matching daemon has stored them."""
        inbox = f"{self._prefix}.{next(self._ids)}"
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[inbox] = fut
        headers = {"Nats-Msg-Id": f"{user}:{key}", names.REPLY_HEADER: inbox}
        request_id = bound("request_id")
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id  # matching logs its work on this command with it
        started = time.perf_counter()
        try:
            ack = await self.js.publish(names.order_subject(market), ex_encode(cmd), headers=headers, timeout=5)
            if ack.duplicate:
                # A retry of a command already stored: answer with its recorded outcome.
                self._waiters.pop(inbox, None)
                for _ in range(50):
                    data = await self.query("outcome", {"user": user, "client_order_id": key, "market": market})
                    if data != b"null":
                        return [own_view(e, user) for e in msgspec.json.decode(data) if concerns(e, user)]
                    # Matching keeps recent outcomes in memory only; one from before its last
                    # snapshot is gone after a restart, but the order's events are in the views.
                    recorded = await self.recorded_outcome(user, key)
                    if recorded:
                        return recorded
                    await asyncio.sleep(0.1)
                raise ExchangeUnavailable("the order is stored but not processed yet", "check `stockctl orders`")
            data = await asyncio.wait_for(fut, 10)
            if self.ack_seconds is not None:
                self.ack_seconds.observe(time.perf_counter() - started)
        except TimeoutError:
            raise ExchangeUnavailable(
                "the order is stored; the matching engine has not answered yet",
                "it will be processed when matching is back: check `stockctl orders`",
            ) from None
        except (
            nats.errors.NoRespondersError,
            nats.errors.TimeoutError,
            nats.errors.ConnectionClosedError,
            nats.js.errors.NoStreamResponseError,  # NATS going away or not back yet
        ) as exc:
            raise ExchangeUnavailable(f"could not store the order ({exc.__class__.__name__})", "retry") from None
        except nats.js.errors.APIError as exc:
            if exc.err_code != DUPLICATE_IN_PROCESS:
                raise
            # A cluster still agreeing on an earlier attempt with this id (its leader changed
            # or stalled): this retry is neither stored nor refused yet. The next retry is
            # answered as a duplicate, with the order's outcome.
            raise ExchangeUnavailable("the order's earlier attempt is still being stored", "retry") from None
        finally:
            self._waiters.pop(inbox, None)
        return [own_view(e, user) for e in msgspec.json.decode(data) if concerns(e, user)]

    async def ensure_funded(self, user: str) -> None:
        """A new account's demo balances, once (the engine ignores a second funding)."""
        if user in self.funded:
            return
        # A fresh id per attempt, not a fixed "fund": after a matching restart the outcome of a
        # funding older than its snapshot is unknown, so a de-duplicated resend (a restarted
        # gateway) could never be answered. A repeat is only rejected as already_funded.
        # Each market group funds its own assets (every asset lives in one group).
        for group, amounts in split_funding(self.groups, self.s.demo_balances):
            key = f"fund-{uuid.uuid4().hex}"
            cmd = Fund(user=user, request_id=key, amounts=amounts, ts=time.time_ns())
            await self.submit(group.accounts_market, cmd, key, user)
        self.funded.add(user)

    async def place(self, user: str, order: OrderIn) -> list[dict[str, Any]]:
        market = await self.known_market(order.market)
        coid = uuid.uuid4().hex if order.client_order_id is None else order.client_order_id
        if not COID_RE.fullmatch(coid):
            raise UsageError("bad client_order_id", "use 1-64 of A-Z, a-z, 0-9, _ . -")
        if order.stop_price is not None:
            # With a price, a stop is taken as a stop-limit; a stop buy with a cap says type "stop".
            default = "stop_limit" if order.price is not None else "stop"
        else:
            default = "limit" if order.price is not None else "market"
        otype = order.type or default
        tif = "gtd" if order.expire_at is not None and order.tif == "gtc" else order.tif
        if (
            otype not in ("limit", "market", "stop", "stop_limit")
            or order.side not in ("buy", "sell")
            or tif not in ("gtc", "ioc", "fok", "gtd")
        ):
            raise UsageError(
                "bad order", "side is buy or sell, type limit, market, stop or stop_limit, tif gtc, ioc, fok or gtd"
            )
        try:
            expire = None if order.expire_at is None else expire_at_ns(order.expire_at)
        except ValueError as exc:
            raise UsageError(str(exc), "e.g. 2030-01-02T15:04:05Z or 1893596645000") from None
        await self.ensure_funded(user)
        cmd = Place(
            user=user,
            client_order_id=coid,
            market=market,
            side=order.side,
            type=otype,  # type: ignore[arg-type]
            qty=order.qty,
            ts=time.time_ns(),
            price=order.price,
            tif=tif,  # type: ignore[arg-type]
            post_only=order.post_only,
            stop_price=order.stop_price,
            expire_at=expire,
            display_qty=order.display_qty,
        )
        return await self.submit(market, cmd, coid, user)

    async def amend(self, user: str, order_id: int, change: AmendIn) -> list[dict[str, Any]]:
        """Amend one of the user's open orders; someone else's is unknown, like a missing one."""
        if change.market is None:
            opens = msgspec.json.decode(await self.query("orders", {"user": user}))
            mine = next((o for o in opens if o["order_id"] == order_id), None)
            key = f"amend-{uuid.uuid4().hex}"
            if mine is None:
                # Answered as the engine answers an unknown id when the market is given, so that the
                # code (unknown_order, 404) does not depend on whether the client named the market.
                return [unknown_order(user, key, order_id)]
            market = mine["market"]
        else:
            market = await self.known_market(change.market)
            key = f"amend-{uuid.uuid4().hex}"
        cmd = Amend(user, key, market, order_id, time.time_ns(), price=change.price, qty=change.qty)
        return await self.submit(market, cmd, key, user)

    async def cancel(self, user: str, market: str, order_id: int) -> list[dict[str, Any]]:
        market = await self.known_market(market)
        key = f"cancel-{uuid.uuid4().hex}"
        cmd = Cancel(user=user, request_id=key, market=market, order_id=order_id, ts=time.time_ns())
        return await self.submit(market, cmd, key, user)

    async def cancel_all(self, user: str, market: str) -> list[dict[str, Any]]:
        market = await self.known_market(market)
        key = f"cancel-all-{uuid.uuid4().hex}"
        return await self.submit(
            market, CancelAll(user=user, request_id=key, market=market, ts=time.time_ns()), key, user
        )

    async def recent_trades(self, market: str, limit: int) -> list[Any]:
        market = await self.known_market(market)
        raw = await self.r.lrange(names.trades_key(market), -limit, -1)
        return [public_trade_decoder.decode(b) for b in raw]

    async def fills(self, user: str, limit: int) -> list[dict[str, Any]]:
        raw = await self.r.lrange(names.fills_key(user), -limit, -1)
        return [fill_view(user, msgspec.json.decode(b)) for b in raw]

    async def trades_of(self, user: str) -> list[dict[str, Any]]:
        """Every trade the views keep with ``user`` on either side, oldest first (both sides named)."""
        return [msgspec.json.decode(b) for b in await self.r.lrange(names.fills_key(user), 0, -1)]

    async def recorded_outcome(self, user: str, client_order_id: str) -> list[dict[str, Any]] | None:
        """An order's events from the Redis views (accepted or rejected, its fills, its cancel)."""
        orders = [msgspec.json.decode(b) for b in await self.r.lrange(names.orders_key(user), 0, -1)]
        first = next(
            (
                e
                for e in orders
                if e.get("event") in ("accepted", "rejected") and e.get("client_order_id") == client_order_id
            ),
            None,
        )
        if first is None:
            return None
        if first["event"] == "rejected":
            return [first]
        oid = first["order_id"]
        fills = [msgspec.json.decode(b) for b in await self.r.lrange(names.fills_key(user), 0, -1)]
        mine = [own_view(t, user) for t in fills if t.get("taker_order_id") == oid and t.get("taker_user") == user]
        ended = [e for e in orders if e.get("event") == "cancelled" and e.get("order_id") == oid]
        return sorted([first, *mine, *ended], key=lambda e: e["seq"])

    async def order_history(self, user: str, limit: int) -> list[Any]:
        raw = await self.r.lrange(names.orders_key(user), -limit, -1)
        return [msgspec.json.decode(b) for b in raw]


def unknown_order(user: str, key: str, order_id: int) -> dict[str, Any]:
    """The rejection of a command on an id that is not one of the user's open orders, found out by
    the gateway's lookup (no market named) before any market saw it: no seq, no market."""
    return {
        "event": "rejected",
        "user": user,
        "client_order_id": key,
        "reason": f"unknown order {order_id}: you have no open order with that id",
        "code": "unknown_order",
    }


class ExchangeUnavailable(StockctlError):
    """The matching daemon did not answer in time."""


def order_result(events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for a command's events: 201/200 with status, or 422 with the reason."""
    first = events[0] if events else {}
    if first.get("event") == "rejected":
        return 422, {"error": first["code"], "detail": first["reason"], "events": events}
    accepted = next((e for e in events if e.get("event") == "accepted"), None)
    body: dict[str, Any] = {"events": events}
    if accepted is not None:
        oid = accepted["order_id"]
        fills = [
            e for e in events if e.get("event") == "trade" and oid in (e.get("maker_order_id"), e.get("taker_order_id"))
        ]
        cancelled = next((e for e in events if e.get("event") == "cancelled" and e["order_id"] == oid), None)
        remaining = fills[-1]["taker_remaining"] if fills else accepted["qty"]
        if cancelled is not None:
            status = "cancelled" if not fills else "partially_filled_cancelled"
        elif fills and _is_zero(remaining):
            status = "filled"
        elif fills:
            status = "partially_filled"
        elif accepted.get("stop_price") and not any(e.get("event") == "triggered" for e in events):
            status = "pending"  # a stop, waiting for its trigger
        else:
            status = "open"
        body |= {
            "order_id": oid,
            "client_order_id": accepted["client_order_id"],
            "status": status,
            "filled": [{"qty": f["qty"], "price": f["price"], "fee": f["taker_fee"]} for f in fills],
        }
        return 201, body
    return 200, body


def amend_result(events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for an amend: 200 with the amended order, 404 if unknown, else 422."""
    first = next((e for e in events if e.get("event") in ("amended", "rejected")), {})
    if first.get("event") != "amended":
        status = 404 if first.get("code") == "unknown_order" else 422
        return status, {"error": first.get("code", "unknown"), "detail": first.get("reason", ""), "events": events}
    oid = first["order_id"]
    fills = [e for e in events if e.get("event") == "trade" and e.get("taker_order_id") == oid]
    cancelled = any(e.get("event") == "cancelled" and e.get("order_id") == oid for e in events)
    remaining = fills[-1]["taker_remaining"] if fills else first["remaining"]
    status = "cancelled" if cancelled else "filled" if _is_zero(remaining) else first.get("status", "open")
    return 200, {
        "order_id": oid,
        "client_order_id": first["client_order_id"],
        "status": status,
        "price": first["new_price"],
        "qty": first["new_qty"],
        "remaining": remaining,
        "priority": first["priority"],
        "filled": [{"qty": f["qty"], "price": f["price"], "fee": f["taker_fee"]} for f in fills],
        "events": events,
    }


def _is_zero(text: str) -> bool:
    return text.strip("0.") == ""
