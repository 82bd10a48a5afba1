"""The async client of a running instance: REST calls, live iterators, orders rounded to the market.

:class:`Client` logs in one of three ways (:mod:`stockctl.sdk.sessions`): an email and password
(``register=True`` creates the account first), a token, or the CLI's stored login (neither
given). Its token renews itself before it expires, for REST calls and on every open socket.
It reaches one or several gateways (:class:`~stockctl.sdk.stream.Endpoints`): a failed
connection moves to the next one. Every answer is a typed struct (:mod:`stockctl.sdk.types`);
every failure is a :class:`~stockctl.errors.StockctlError` whose message says what to do:
``NotLoggedIn`` (401, or a login that is gone), ``NotFound`` (404), ``OrderRejected`` (the
exchange refused an order; ``.code`` says why: ``tick_size``, ``funds``, ...), ``UsageError``
(bad input), ``ServiceUnavailable`` (nothing answers).

Live iterators (``quotes``, ``signals``, ``trades``, ``book``, ``orders``, ``alerts``) each keep
one WebSocket open (:func:`~stockctl.sdk.stream.live_frames`): they resubscribe after a
reconnect, and ``book`` keeps a local book that it resyncs over REST on a sequence gap.

A write is sent to one gateway only unless it cannot have arrived (the connection was
refused); an order always carries a ``client_order_id`` (one is made if not given), and the
exchange keeps one order per id, so a place retried on another gateway cannot trade twice.
A 429 is retried after its ``Retry-After`` (at most 5 s, three times).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any, Literal

import httpx
import msgspec

from stockctl.alerts.rules import Alert
from stockctl.client.api import OrderRejected, raise_for, symbol_path
from stockctl.client.credentials import LiveSession, Session, base_url
from stockctl.errors import ServiceUnavailable, UsageError
from stockctl.exchange.book import OrderView
from stockctl.sdk.book import LocalBook, maintain
from stockctl.sdk.rules import MarketRules, text
from stockctl.sdk.sessions import PasswordLogin, TokenSource
from stockctl.sdk.stream import Endpoints, StateHandler, live_frames
from stockctl.sdk.types import (
    AmendResult,
    Balance,
    BookUpdate,
    CancelAllResult,
    Fill,
    OrderEvent,
    OrderResult,
    OrderState,
)
from stockctl.settings import Settings
from stockctl.wire.base_urls import split_urls
from stockctl.wire.exchange import MarketSpec
from stockctl.wire.gateway import PublicTrade, ServerFrame
from stockctl.wire.marketdata import Candle, Quote, Signal
from stockctl.wire.symbols import parse_symbol

Number = Decimal | int | str
MAX_RETRY_AFTER_S = 5.0


class _Counted:
    """A token source that counts how often the token it hands out changed (renewals)."""

    def __init__(self, inner: TokenSource) -> None:
        self.inner = inner
        self.tokens: list[str] = []

    @property
    def renewable(self) -> bool:
        return self.inner.renewable

    def _seen(self, s: Session) -> Session:
        if not self.tokens or self.tokens[-1] != s.access_token:
            self.tokens.append(s.access_token)
        return s

    def current(self) -> Session:
        return self._seen(self.inner.current())

    def renew(self, refused: str) -> Session:
        return self._seen(self.inner.renew(refused))


class Client:
    """An async client of the gateway(s); use ``async with Client(...) as c:``.

    ``url``: one gateway base URL or a list of them (failover, in order); none: the running
    instance of ``settings``' state dir (``STOCKCTL_HOME``), found as the CLI finds it.
    ``ws_url`` names the socket(s) if ``/api/v1/info`` should not be asked. Login: ``email`` and
    ``password`` (``register=True`` makes the account first), or ``token``, or else the stored
    login of ``stockctl login``. ``max_attempts``: reconnects in a row before a live iterator
    gives up (None: never).
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        ws_url: str | Sequence[str] | None = None,
        email: str | None = None,
        password: str | None = None,
        token: str | None = None,
        register: bool = False,
        settings: Settings | None = None,
        max_attempts: int | None = 30,
    ) -> None:
        self.settings = settings or Settings()
        urls = [url] if isinstance(url, str) else list(url or [])
        ws_urls = [ws_url] if isinstance(ws_url, str) else list(ws_url or [])
        self.endpoints = Endpoints(urls, ws_urls) if urls else Endpoints.instance(self.settings)
        if (email is None) != (password is None):
            raise UsageError("give both email and password, or neither")
        source: TokenSource
        if token is not None:
            source = LiveSession(self.settings, token)
        elif email is not None and password is not None:
            auth_urls = urls or split_urls(base_url(self.settings))
            source = PasswordLogin(auth_urls, email, password, register)
        else:
            source = LiveSession(self.settings)
        self._source = _Counted(source)
        self.max_attempts = max_attempts
        self._grant: Session | None = None
        self._http: httpx.AsyncClient | None = None
        self._rest_i = 0
        self._rules: dict[str, MarketRules] = {}
        self.orders_placed = 0
        """Orders this client placed that the exchange accepted."""

    # --- life cycle ------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.login()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def login(self) -> str:
        """Log in now (the first call does it anyway); the account's email."""
        self._grant = await asyncio.to_thread(self._source.current)
        if self._grant.email:
            return self._grant.email
        return str((await self._json("GET", "/auth/me", None, dict)).get("email", ""))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def renewals(self) -> int:
        """How many times this client's access token was replaced (REST and sockets together)."""
        return max(0, len(self._source.tokens) - 1)

    # --- REST plumbing ---------------------------------------------------------------

    async def _token(self) -> str:
        grant = self._grant
        if grant is None or grant.renew_in() <= 0:
            grant = self._grant = await asyncio.to_thread(self._source.current)
        return grant.access_token

    async def _request(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None, retry: bool = True
    ) -> httpx.Response:
        """One REST call with a valid token, failing over between gateways; 401 renews once, 429 waits."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=15)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        failures, renewed, limited = 0, False, 0
        while True:
            where = self.endpoints.rest_url(self._rest_i)
            token = await self._token()
            try:
                resp = await self._http.request(
                    method, where + path, json=body, params=query, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as exc:
                # A refused connection never arrived: any call may go elsewhere. Otherwise only
                # calls that are safe twice (reads, and orders: de-duplicated by client_order_id).
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                failures += 1
                if (sent and not retry) or failures >= max(2, len(self.endpoints)) * 2:
                    raise ServiceUnavailable(
                        f"cannot reach the gateway at {where} ({exc.__class__.__name__})",
                        "is the instance up? `stockctl status`",
                    ) from None
                self._rest_i += 1
                if self._rest_i % len(self.endpoints) == 0:
                    await asyncio.sleep(0.2 * failures)
                continue
            if resp.status_code == 401 and not renewed and self._source.renewable:
                renewed = True
                self._grant = await asyncio.to_thread(self._source.renew, token)
                continue
            if resp.status_code == 429 and limited < 3:
                limited += 1
                await asyncio.sleep(min(_retry_after(resp), MAX_RETRY_AFTER_S))
                continue
            return resp

    async def _json(self, method: str, path: str, body: Any, type_: Any, retry: bool = True, **params: Any) -> Any:
        resp = await self._request(method, path, body, params, retry)
        if resp.status_code == 422 and path.startswith("/api/v1/orders"):
            doc = resp.json()  # the exchange's refusal, with its reason code
            raise OrderRejected(doc.get("detail") or "rejected", code=doc.get("error", ""))
        raise_for(resp)
        return msgspec.json.decode(resp.content, type=type_)

    # --- market data -----------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote:
        return await self._json("GET", f"/api/v1/prices/{symbol_path(symbol)}", None, Quote)

    async def prices(self) -> list[Quote]:
        """The latest quote of every symbol."""
        return await self._json("GET", "/api/v1/prices", None, list[Quote])

    async def recent_signals(self, symbol: str, limit: int = 50) -> list[Signal]:
        return await self._json("GET", f"/api/v1/signals/{symbol_path(symbol)}", None, list[Signal], limit=limit)

    async def candles(self, symbol: str, interval: str = "1m", limit: int = 100) -> list[Candle]:
        path = f"/api/v1/candles/{symbol_path(symbol)}"
        return await self._json("GET", path, None, list[Candle], interval=interval, limit=limit)

    async def markets(self) -> list[MarketSpec]:
        """Every exchange market with its tick size, lot size and order size limits."""
        return await self._json("GET", "/api/v1/markets", None, list[MarketSpec])

    async def rules(self, market: str) -> MarketRules:
        """The rounding rules of ``market`` (asked once, then kept)."""
        market = parse_symbol(market)
        if market not in self._rules:
            self._rules.update({m.symbol: MarketRules(m) for m in await self.markets()})
        if market not in self._rules:
            raise UsageError(f"unknown market {market}", f"known markets: {', '.join(sorted(self._rules))}")
        return self._rules[market]

    async def book_snapshot(self, market: str, depth: int = 20) -> BookUpdate:
        """The depth ladder now, best first, with the feed's ``seq`` it includes."""
        return await self._json("GET", f"/api/v1/book/{symbol_path(market)}", None, BookUpdate, depth=depth)

    async def recent_trades(self, market: str, limit: int = 50) -> list[PublicTrade]:
        return await self._json("GET", f"/api/v1/trades/{symbol_path(market)}", None, list[PublicTrade], limit=limit)

    # --- orders and account ----------------------------------------------------------

    async def place(
        self,
        market: str,
        side: Literal["buy", "sell"],
        qty: Number,
        price: Number | None = None,
        *,
        type: str | None = None,
        tif: str = "gtc",
        post_only: bool = False,
        client_order_id: str | None = None,
        stop_price: Number | None = None,
        expire_at: str | int | None = None,
        display_qty: Number | None = None,
    ) -> OrderResult:
        """Place an order exactly as given (see :meth:`order` to round it to the market first).

        No price: a market order; ``type``, ``tif`` (gtc, ioc, fok, gtd) and the rest as in the
        REST API. Raises OrderRejected with the exchange's reason and ``code``.
        """
        body = {
            "market": parse_symbol(market),
            "side": side,
            "qty": text(qty),
            "price": None if price is None else text(price),
            "type": type,
            "tif": tif,
            "post_only": post_only,
            "client_order_id": client_order_id or uuid.uuid4().hex,  # makes a retry safe
            "stop_price": None if stop_price is None else text(stop_price),
            "expire_at": expire_at,
            "display_qty": None if display_qty is None else text(display_qty),
        }
        body = {k: v for k, v in body.items() if v is not None}
        placed = await self._json("POST", "/api/v1/orders", body, OrderResult)
        self.orders_placed += 1
        return placed

    async def order(
        self, market: str, side: Literal["buy", "sell"], qty: Number, price: Number | None = None, **kw: Any
    ) -> OrderResult:
        """:meth:`place`, with the quantity rounded down to the lot and the price to the tick
        (a buy's down, a sell's up): ``await c.order("TATA_INR", "buy", Decimal("7.9"), Decimal("950.03"))``
        sends 7 at 950.00."""
        rules = await self.rules(market)
        return await self.place(market, side, rules.qty(qty), None if price is None else rules.price(price, side), **kw)

    async def buy(self, market: str, qty: Number, price: Number | None = None, **kw: Any) -> OrderResult:
        """A buy rounded to the market (:meth:`order`); no price: a market order."""
        return await self.order(market, "buy", qty, price, **kw)

    async def sell(self, market: str, qty: Number, price: Number | None = None, **kw: Any) -> OrderResult:
        """A sell rounded to the market (:meth:`order`); no price: a market order."""
        return await self.order(market, "sell", qty, price, **kw)

    async def cancel(self, order_id: int, market: str | None = None) -> OrderResult:
        """Cancel one of your open orders; NotFound if it is not (any more) open."""
        return await self._json("DELETE", f"/api/v1/orders/{order_id}", None, OrderResult, False, market=market)

    async def cancel_all(self, market: str | None = None) -> CancelAllResult:
        return await self._json("DELETE", "/api/v1/orders", None, CancelAllResult, False, market=market)

    async def amend(
        self, order_id: int, price: Number | None = None, qty: Number | None = None, market: str | None = None
    ) -> AmendResult:
        """Change an open order's price and/or quantity (the new total, filled part included)."""
        change = {"price": price, "qty": qty}
        body: dict[str, str] = {k: text(v) for k, v in change.items() if v is not None}
        if market is not None:
            body["market"] = parse_symbol(market)
        return await self._json("PATCH", f"/api/v1/orders/{order_id}", body, AmendResult, False)

    async def get_order(self, order_id: int) -> OrderState:
        """One order of yours, open or finished: status, filled quantity, average price, remaining."""
        return await self._json("GET", f"/api/v1/orders/{order_id}", None, OrderState)

    async def open_orders(self, market: str | None = None) -> list[OrderView]:
        return await self._json("GET", "/api/v1/orders", None, list[OrderView], market=market)

    async def fills(self, limit: int = 100) -> list[Fill]:
        """Your latest fills, oldest first."""
        return await self._json("GET", "/api/v1/fills", None, list[Fill], limit=limit)

    async def balances(self) -> dict[str, Balance]:
        """Available and reserved, per asset (a new account is funded on first use)."""
        return await self._json("GET", "/api/v1/balances", None, dict[str, Balance])

    # --- live iterators --------------------------------------------------------------

    async def frames(self, *channels: str, on_state: StateHandler | None = None) -> AsyncIterator[ServerFrame]:
        """Every frame of ``channels`` on one socket kept open (renewed, reconnected, failed over);
        an error frame (an unknown channel, say) is raised as UsageError."""
        frames = live_frames(self.endpoints, [list(channels)], self._source, on_state, self.max_attempts)
        async for f in frames:
            if f.type == "error":
                raise UsageError(f.detail or f.error or "gateway error")
            yield f

    async def quotes(self, *symbols: str) -> AsyncIterator[Quote]:
        """Each new quote of ``symbols`` (the latest one first, when subscribed), never twice."""
        seen: dict[str, int] = {}
        async for f in self.frames(*(f"quotes:{parse_symbol(s)}" for s in symbols)):
            if f.type in ("snapshot", "quote") and len(f.data):
                q = msgspec.json.decode(f.data, type=Quote)
                if seen.get(q.symbol) != q.seq:  # a reconnect's snapshot repeats the last one
                    seen[q.symbol] = q.seq
                    yield q

    async def signals(self, *symbols: str) -> AsyncIterator[Signal]:
        """Each SMA crossover of ``symbols`` from now on (the snapshot's older ones are skipped)."""
        last: dict[str, int] = {}
        async for f in self.frames(*(f"signals:{parse_symbol(s)}" for s in symbols)):
            if f.type == "snapshot" and f.channel is not None:
                old = msgspec.json.decode(f.data, type=list[Signal])
                symbol = f.channel.split(":", 1)[1]
                last[symbol] = max([last.get(symbol, 0), *(s.seq for s in old)])
            elif f.type == "signal":
                s = msgspec.json.decode(f.data, type=Signal)
                if s.seq > last.get(s.symbol, 0):
                    last[s.symbol] = s.seq
                    yield s

    async def trades(self, market: str) -> AsyncIterator[PublicTrade]:
        """Each public trade of ``market`` from now on (price, qty, taker side; never who)."""
        async for f in self.frames(f"trades:{parse_symbol(market)}"):
            if f.type == "trade":
                yield msgspec.json.decode(f.data, type=PublicTrade)

    async def book(self, market: str) -> AsyncIterator[LocalBook]:
        """The book of ``market`` after each change: one :class:`LocalBook`, updated in place,
        resynced over REST when a sequence number is missed."""
        mkt = parse_symbol(market)
        async for b in maintain(self.frames(f"book:{mkt}"), mkt, lambda: self.book_snapshot(mkt)):
            yield b

    async def orders(self, snapshots: bool = False) -> AsyncIterator[OrderEvent | list[OrderView]]:
        """Your own order events as they happen (accepted, trade, cancelled, amended, ...).

        Events while disconnected are not replayed: with ``snapshots=True`` each (re)connect
        also yields your open orders then (``list[OrderView]``); :meth:`fills` has the rest.
        """
        async for f in self.frames("orders"):
            if f.type == "order_event":
                yield msgspec.json.decode(f.data, type=OrderEvent)
            elif f.type == "snapshot" and snapshots:
                yield msgspec.json.decode(f.data, type=list[OrderView])

    async def alerts(self) -> AsyncIterator[Alert]:
        """Each of your price alerts as it fires."""
        async for f in self.frames("alerts"):
            if f.type == "alert":
                yield msgspec.json.decode(f.data, type=Alert)


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0
