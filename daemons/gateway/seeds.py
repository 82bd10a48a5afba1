"""The seed clients' doors on the gateway's HTTP port: their clients work unchanged but for host and port.

Each seed design document (``shared/seeds/001..004``) is served as it documents itself; prices
and quantities are JSON numbers carrying our exact decimal digits (:mod:`stockctl.wire.seeds`).

REST (market data: a token unless ``public_market_data``):

* seed 002 ``GET /prices``, ``/price/{symbol}``, ``/price/history/{symbol}/{limit}`` in its
  ``{"message","data","success"}`` envelope (history newest first, as its ``ZREVRANGE``).
* seed 003 ``GET /api/v1/btc``: ``{"symbol","price","sma","signal","timestamp"}`` of the first
  served BTC symbol (BTCUSDT, BTC-USD, BTC/USDT, BTCUSD, BTC); ``sma`` is the fast SMA (20 by
  default: seed 003's SMA-20) and ``signal`` ``BUY`` when the price is above it, else ``SELL``
  (``null`` until it is known). Its ``/api/v1/history/:symbol`` is our own route: the last 100.

Trading (always a token):

* seed 004 ``POST /login`` ``{"email","password"}`` -> ``{"token"}`` (our access token), and
  ``POST /order`` ``{"order_type":"Buy|Sell","order_kind":"Limit|Market","price","quantity","market"}``:
  the numbers are decoded from their JSON text straight to Decimal, never through float.

WebSocket ``/ws`` on the HTTP port (a token in ``Authorization`` unless ``public_market_data``):

* a client that says nothing for :data:`GRACE_S` gets every quote as seed 002's
  ``{"symbol","price","timestamp"}`` plus seed 003's ``"sma"`` and ``"signal"``;
* seed 001's ``{"action":"subscribe","payload":{"symbols":[...]}}`` gets
  ``{"type":"snapshot","data":[StockPrice...]}`` and then ``{"type":"update","data":StockPrice}``
  for those symbols only (``"action":"unsubscribe"`` stops them);
* seed 004's ``{"SubscribeOrderbook":"TATA_INR"}`` gets ``{"OrderbookSnapshot":{market,seq,bids,asks}}``
  and then ``{"OrderbookUpdate":{...}}`` deltas, levels ``[price, quantity]`` (quantity 0: gone).
  Its ``?user_id=`` is ignored: private events never go to an unauthenticated id.

A client whose queue passes :data:`QUEUE_LIMIT` frames is closed (1013), so a slow seed
client never stalls NATS delivery to the rest of the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from nats.aio.client import Client as NATS
from redis.exceptions import RedisError
from starlette.convertors import Convertor, register_url_convertor

from daemons.gateway.auth_proxy import AuthProxy
from daemons.gateway.exchange_api import ExchangeApi, order_result
from daemons.gateway.responses import json_response, small_body
from daemons.gateway.tokens import Forbidden, KeyRing, Unauthorized, check_user, market_reader
from stockctl.auth.tokens import Claims
from stockctl.errors import NotFound, StockctlError, UsageError
from stockctl.marketdata.store import MarketStore
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.gateway import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, OrderIn
from stockctl.wire.marketdata import Quote, quote_decoder
from stockctl.wire.seeds import encode_numbers, number, rfc3339

log = logging.getLogger("stockctl.gateway.seeds")

GRACE_S = 0.3  # seeds 002/003 never send: after this long without a message, stream everything
QUEUE_LIMIT = 1024
BTC_SYMBOLS = ("BTCUSDT", "BTC-USD", "BTC/USDT", "BTCUSD", "BTC")


class _PriceSymbol(Convertor[str]):
    """A symbol in seed 002's ``/price/{symbol}``: may hold a ``/`` (sent as ``%2F``, which
    arrives decoded), but is never ``history/...``, which is ``/price/history/{symbol}/{limit}``."""

    regex = "(?!history/).+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("price_symbol", _PriceSymbol())


def envelope(message: str, data: Any) -> Response:
    """Seed 002's ``{"message","data","success"}`` answer."""
    body = encode_numbers({"message": message, "data": data, "success": True})
    return Response(body, media_type="application/json")


def quote_view(q: Quote) -> dict[str, Any]:
    """Seed 002's message plus seed 003's SMA and recommendation."""
    sma = number(q.sma_fast)
    price = Decimal(q.price)
    signal = None if sma is None else ("BUY" if price > sma else "SELL")
    return {"symbol": q.symbol, "price": price, "timestamp": rfc3339(q.ts), "sma": sma, "signal": signal}


def stock_price_view(q: Quote) -> dict[str, Any]:
    return {"symbol": q.symbol, "price": Decimal(q.price), "timestamp": rfc3339(q.ts)}


class SeedOrder(msgspec.Struct, forbid_unknown_fields=True):
    """Seed 004's ``IncomingOrderRequest``."""

    order_type: Literal["Buy", "Sell"]
    order_kind: Literal["Limit", "Market"]
    quantity: Decimal
    market: str
    price: Decimal | None = None


seed_order_decoder = msgspec.json.Decoder(SeedOrder)


def _plain(d: Decimal, what: str) -> str:
    """``d`` as plain digits, refusing an exponent that would spell millions of them (``1e999999999``)."""
    if not d.is_finite() or not -30 <= d.as_tuple().exponent <= 30 or d.adjusted() > 30:  # type: ignore[operator]
        raise UsageError(f"{what} {str(d)[:40]} is out of range", "send a plain number such as 100.50")
    return format(d, "f")


def add_routes(
    app: FastAPI,
    settings: Settings,
    store: MarketStore,
    exchange: ExchangeApi,
    keys: KeyRing,
    r: aioredis.Redis,
    user: Callable[[Request], Awaitable[Claims]],
    proxy: AuthProxy,
) -> None:
    """Mount the seeds' REST endpoints and their WebSocket on ``app`` (see the module docstring)."""
    market = market_reader(settings, user)

    @app.get("/prices", include_in_schema=False)
    async def seed_prices(request: Request) -> Response:
        await market(request)
        quotes = await store.quotes()
        return envelope("successfully send all the prices", {q.symbol: Decimal(q.price) for q in quotes})

    @app.get("/price/{symbol:price_symbol}", include_in_schema=False)
    async def seed_price(symbol: str, request: Request) -> Response:
        await market(request)
        q = await store.quote(symbol)
        return envelope("successfully send price for the symbol", {"symbol": q.symbol, "price": Decimal(q.price)})

    @app.get("/price/history/{symbol:path}/{limit}", include_in_schema=False)
    async def seed_history(request: Request, symbol: str, limit: int) -> Response:
        await market(request)
        points = await store.history(symbol, limit)
        return envelope("successfully send price history", [Decimal(p.price) for p in reversed(points)])

    @app.get("/api/v1/btc", include_in_schema=False)
    async def seed_btc(request: Request) -> Response:
        await market(request)
        known = set(await store.symbols())
        sym = next((s for s in BTC_SYMBOLS if s in known), None)
        if sym is None:
            raise NotFound("no BTC symbol is served", "serve one: --symbols BTCUSDT or --feed binance:BTCUSDT")
        return Response(encode_numbers(quote_view(await store.quote(sym))), media_type="application/json")

    @app.post("/login", include_in_schema=False)
    async def seed_login(request: Request) -> Response:
        upstream = await proxy.forward(request, "/auth/login")
        if upstream.status_code != 200:
            return upstream
        return json_response({"token": msgspec.json.decode(upstream.body)["access_token"]})

    @app.post("/order", status_code=201, include_in_schema=False)
    async def seed_order(request: Request) -> Response:
        claims = await user(request)
        order = await small_body(request, seed_order_decoder, "order")
        if isinstance(order, Response):
            return order
        if order.order_kind == "Limit" and order.price is None:
            raise UsageError("a Limit order needs a price", 'send "price": 100.50')
        ours = OrderIn(
            market=order.market,
            side=order.order_type.lower(),
            qty=_plain(order.quantity, "quantity"),
            price=_plain(order.price, "price") if order.order_kind == "Limit" and order.price is not None else None,
            type=order.order_kind.lower(),
        )
        status, doc = order_result(await exchange.place(claims.email, ours))
        return json_response(doc, status)

    @app.websocket("/ws")
    async def seed_ws(ws: WebSocket) -> None:
        await ws.accept()
        claims: Claims | None = None
        if not settings.public_market_data:
            try:
                claims = await check_user(r, keys, ws.headers.get("authorization"))
            except (Unauthorized, Forbidden) as exc:
                code = CLOSE_FORBIDDEN if isinstance(exc, Forbidden) else CLOSE_UNAUTHORIZED
                hint = "" if code == CLOSE_FORBIDDEN else "; or set STOCKCTL_PUBLIC_MARKET_DATA=1"
                await ws.close(code, (str(exc) + hint)[:120])
                return
        await SeedSession(ws, exchange.nc, store, exchange, claims, settings.ws_max_messages_per_s).run()


class SeedSession:
    """One seed client's WebSocket: firehose, seed 001 symbols or seed 004 order books."""

    def __init__(
        self, ws: WebSocket, nc: NATS, store: MarketStore, exchange: ExchangeApi, claims: Claims | None, rate: float
    ) -> None:
        self.ws, self.nc, self.store, self.exchange, self.claims = ws, nc, store, exchange, claims
        self.rate, self.tokens, self.last = rate, rate * 2, time.monotonic()  # as our own /ws: burst of 2 s
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self.subs: dict[str, Any] = {}
        self.spoke = False
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.closed = True
            asyncio.get_running_loop().create_task(self.ws.close(1013, "client too slow: outgoing queue full"))

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        reader = asyncio.create_task(self._read())
        expiry = self.claims.exp - time.time() if self.claims else None
        try:
            done, _ = await asyncio.wait({reader}, timeout=GRACE_S)
            if not done and not self.spoke:
                await self._sub("firehose", names.QUOTE_SUBJECTS, self._on_firehose)
            remaining = None if expiry is None else max(0.0, expiry - GRACE_S)
            done, _ = await asyncio.wait({reader}, timeout=remaining)
            if not done:  # the token ran out: as on our own WebSocket, reconnect with a fresh one
                self.closed = True
                with contextlib.suppress(Exception):
                    await self.ws.close(CLOSE_UNAUTHORIZED, "token expired; reconnect with a fresh one")
        finally:
            reader.cancel()
            writer.cancel()
            for sub in self.subs.values():
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _write(self) -> None:
        while True:
            data = await self.queue.get()
            await self.ws.send_text(data.decode())

    async def _read(self) -> None:
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            raw = frame.get("text") or frame.get("bytes") or b""  # a binary frame is read as JSON too
            self.spoke = True
            now = time.monotonic()
            self.tokens = min(self.rate * 2, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1:  # each message may cost Redis and NATS work: a flood is cut off
                await self.ws.close(1008, "message rate limit exceeded")
                return
            self.tokens -= 1
            try:
                await self._on_message(raw)
            except StockctlError as exc:
                self.send(encode_numbers({"type": "error", "error": type(exc).__name__.lower(), "detail": str(exc)}))
            except RedisError:  # Redis restarting: the client may retry, the socket stays
                self.send(b'{"type":"error","error":"unavailable","detail":"storage unavailable; retry"}')

    async def _sub(self, key: str, subject: str, cb: Callable[[Any], Awaitable[None]]) -> None:
        if key not in self.subs:
            self.subs[key] = await self.nc.subscribe(subject, cb=cb)

    async def _unsub(self, key: str) -> None:
        sub = self.subs.pop(key, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_firehose(self, msg: Any) -> None:
        self.send(encode_numbers(quote_view(quote_decoder.decode(msg.data))))

    async def _on_symbol(self, msg: Any) -> None:
        data = stock_price_view(quote_decoder.decode(msg.data))
        self.send(encode_numbers({"type": "update", "data": data}))

    async def _on_message(self, raw: str | bytes) -> None:
        try:
            doc = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"not JSON: {str(exc)[:120]}") from None
        if not isinstance(doc, dict):
            raise UsageError("a message is a JSON object")
        await self._unsub("firehose")  # a client that speaks wants only what it asks for
        if doc.get("action") in ("subscribe", "unsubscribe"):
            symbols = (doc.get("payload") or {}).get("symbols") if isinstance(doc.get("payload"), dict) else None
            if not isinstance(symbols, list) or not 1 <= len(symbols) <= 100:
                raise UsageError(
                    "payload.symbols: give 1 to 100 symbols", '{"action":"subscribe","payload":{"symbols":["AAPL"]}}'
                )
            syms = [await self.store.known(s) if isinstance(s, str) else "" for s in symbols]
            if doc["action"] == "unsubscribe":
                for sym in syms:
                    await self._unsub(f"q:{sym}")
                return
            snapshot = [stock_price_view(await self.store.quote(sym)) for sym in syms]
            self.send(encode_numbers({"type": "snapshot", "data": snapshot}))
            for sym in syms:
                await self._sub(f"q:{sym}", names.quote_subject(sym), self._on_symbol)
        elif isinstance(doc.get("SubscribeOrderbook"), str):
            mkt = await self.exchange.known_market(doc["SubscribeOrderbook"])
            book = msgspec.json.decode(await self.exchange.query("book", {"market": mkt, "depth": 20}))
            self.send(encode_numbers({"OrderbookSnapshot": _book_view(mkt, book)}))
            await self._sub(f"b:{mkt}", names.book_subject(mkt), self._book_cb(mkt))
        elif isinstance(doc.get("UnsubscribeOrderbook"), str):
            await self._unsub(f"b:{doc['UnsubscribeOrderbook'].upper()}")
        else:
            raise UsageError(
                "unknown message",
                'send {"action":"subscribe","payload":{"symbols":[...]}} or {"SubscribeOrderbook":"TATA_INR"}',
            )

    def _book_cb(self, market: str) -> Callable[[Any], Awaitable[None]]:
        async def deliver(msg: Any) -> None:
            doc = msgspec.json.decode(msg.data)
            self.send(encode_numbers({"OrderbookUpdate": _book_view(market, doc)}))

        return deliver


def _book_view(market: str, doc: dict[str, Any]) -> dict[str, Any]:
    def levels(rows: list[list[Any]]) -> list[list[Decimal]]:
        return [[Decimal(row[0]), Decimal(row[1])] for row in rows]

    return {"market": market, "seq": doc.get("seq"), "bids": levels(doc["bids"]), "asks": levels(doc["asks"])}
