"""The gateway's HTTP side on ``gateway_port``: the REST API under ``/api/v1`` as one FastAPI app.

* Market data (prices, history, candles, signals, markets, book, trades) needs a token unless
  ``public_market_data``; orders, fills, balances and alerts always need one.
* Errors are JSON (:mod:`daemons.gateway.responses`): a usage error 400, no token 401, a
  disabled account 403, unknown 404, over the rate limit 429 (:mod:`daemons.gateway.limits`),
  matching or Redis not answering 503.
* Answers carry timestamps as integer ns (as before), integer ms and RFC 3339
  (:func:`stockctl.wire.rest.with_times`); money is decimal strings, read from strings or
  numbers. Lists page with ``since``/``from``/``until``/``after``/``limit`` and ``X-Next-After``.
* The spec at ``/openapi.json`` is completed by :mod:`daemons.gateway.openapi`; the WebSocket
  protocol is also at ``/api/v1/ws`` (:mod:`daemons.gateway.ws_asgi`); CORS only for
  ``cors_origins``.
* A symbol or market in a path may hold anything (``%2F``, control characters): the symbol rule
  refuses it with its reason, not the router with a bare 404.
* The same app serves the seed clients' doors (:mod:`daemons.gateway.seeds`) and passes
  ``/auth/*`` to the auth daemon (:mod:`daemons.gateway.auth_proxy`).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import redis.asyncio as aioredis
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from daemons.gateway import auth_proxy, openapi
from daemons.gateway import seeds as gateway_seeds
from daemons.gateway.auth_proxy import AuthProxy
from daemons.gateway.exchange_api import ExchangeApi, ExchangeUnavailable, amend_result, order_result, unknown_order
from daemons.gateway.limits import RateHeaders, RateLimited, RateLimiter, add_cors, charge
from daemons.gateway.orders import fills_by_order, open_state, order_state, page, parse_after
from daemons.gateway.responses import error_response, json_response, small_body
from daemons.gateway.tokens import Forbidden, KeyRing, Unauthorized, check_user, market_reader
from daemons.gateway.views import fill_view
from daemons.gateway.ws import WsServer
from daemons.gateway.ws_asgi import WS_PATH
from stockctl.alerts.rules import AlertIn
from stockctl.alerts.store import AlertStore, TooManyAlerts
from stockctl.auth.tokens import Claims
from stockctl.errors import NotFound, StockctlError, UsageError
from stockctl.history.reads import HistoryReader, time_range
from stockctl.marketdata.store import MarketStore
from stockctl.settings import Settings
from stockctl.wire.gateway import NumberTolerant, amend_in_decoder, order_in_decoder
from stockctl.wire.rest import point_row, with_times

log = logging.getLogger("stockctl.gateway")


class _SymbolSegment(Convertor[str]):
    """A symbol or market in a path: anything, ``/`` (sent as ``%2F``) and control characters
    included, so that the symbol rule (stockctl.wire.symbols) refuses it with its reason instead of the
    router answering a bare 404 (``path``'s ``.*`` stops at a newline)."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("symbol", _SymbolSegment())


alert_in_decoder = NumberTolerant(AlertIn)
SINCE = Query(None, description="a duration back from now: 90s, 2h, 30d")
FROM = Query(None, alias="from", description="ISO 8601 (naive is UTC) or epoch s/ms/ns")
TO = Query(None, alias="to", description="exclusive end, like from (the same as until)")
UNTIL = Query(None, description="exclusive end, like from")


def rest_json(obj: Any, status: int = 200) -> Response:
    """``obj`` as JSON with every timestamp also in ms and RFC 3339."""
    return json_response(with_times(msgspec.to_builtins(obj)), status)


def paged(obj: Any, cursor: str | None) -> Response:
    resp = rest_json(obj)
    if cursor is not None:
        resp.headers["X-Next-After"] = cursor
    return resp


def end_of(to: str | None, until: str | None) -> str | None:
    if to is not None and until is not None:
        raise UsageError("to and until both given", "they are the same bound: give one")
    return until if until is not None else to


def build_app(
    settings: Settings,
    store: MarketStore,
    exchange: ExchangeApi,
    keys: KeyRing,
    r: aioredis.Redis,
    alerts: AlertStore,
    proxy: AuthProxy,
    ws_server: WsServer | None = None,
) -> FastAPI:
    app = FastAPI(
        title="stockctl gateway",
        version="1",
        description=(
            "Market data and trading over REST; live channels over WebSocket at /ws on the ws port"
            f" and at {WS_PATH} on this port."
        ),
    )
    openapi.install(app, settings)
    app.add_middleware(RateHeaders)
    add_cors(app, settings)  # outermost: a preflight is answered before anything else
    limiter = RateLimiter(settings.rest_rate_limit, settings.rest_rate_window_s)

    @app.exception_handler(RateLimited)
    async def _limited(_: Request, exc: RateLimited) -> JSONResponse:
        return error_response(429, "rate_limited", str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StockctlError)
    async def _stockctl_error(_: Request, exc: StockctlError) -> JSONResponse:
        status = {UsageError: 400, NotFound: 404, Unauthorized: 401, Forbidden: 403, ExchangeUnavailable: 503}.get(
            type(exc), 400
        )
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, type(exc).__name__.lower(), str(exc), headers)

    @app.exception_handler(RedisError)
    async def _redis_error(_: Request, exc: RedisError) -> JSONResponse:
        # Redis restarting: a 503 the client can retry, not a 500 with a traceback in the log.
        return error_response(503, "unavailable", f"the data store is not answering ({exc.__class__.__name__})")

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        # The client hung up mid-body: nobody is left to answer, and it is not the gateway's fault.
        log.debug("client disconnected before sending the whole body: %s %s", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        return error_response(422, "invalid", f"{where}: {err.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http", str(exc.detail))

    async def user(request: Request) -> Claims:
        claims = await check_user(r, keys, request.headers.get("authorization"))
        charge(limiter, request, claims.email)
        return claims

    reader_of_market = market_reader(settings, user)  # market data: public if configured

    async def market_data(request: Request) -> Claims | None:
        claims = await reader_of_market(request)
        if claims is None:  # anonymous (public market data): counted per address
            charge(limiter, request, f"addr:{request.client.host if request.client else '-'}")
        return claims

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/info")
    async def info() -> dict[str, Any]:
        """Where the WebSocket is and which candle intervals exist (no token needed)."""
        return {
            "ws_url": settings.ws_url,
            "ws_path": WS_PATH,
            "candle_intervals": settings.candle_intervals,
            "version": "1",
        }

    @app.get("/api/v1/symbols")
    async def symbols(request: Request) -> Response:
        await market_data(request)
        return json_response(await store.symbols())

    @app.get("/api/v1/prices")
    async def prices(request: Request) -> Response:
        """Latest quote of every symbol."""
        await market_data(request)
        return rest_json(await store.quotes())

    @app.get("/api/v1/prices/{symbol:symbol}")
    async def price(symbol: str, request: Request) -> Response:
        await market_data(request)
        return rest_json(await store.quote(symbol))

    reader = HistoryReader(settings, store)  # Redis's window, the history store (read-only) beyond it

    @app.get("/api/v1/history/{symbol:symbol}")
    async def history(
        request: Request,
        symbol: str,
        limit: int = Query(100, ge=1, le=10_000),
        since: str | None = SINCE,
        start: str | None = FROM,
        end: str | None = TO,
        until: str | None = UNTIL,
        after: str | None = Query(None, description="TS:SEQ of the last point of the previous page"),
    ) -> Response:
        """``[price, ts_ns, seq, ts_ms, time]`` points oldest first: the latest ``limit``, or the first
        of a range (a full page's ``X-Next-After`` header continues it)."""
        await market_data(request)
        points, cursor = await reader.history(symbol, limit, since, start, end_of(end, until), after)
        resp = json_response([point_row(p.price, p.ts, p.seq) for p in points])
        if cursor is not None:
            resp.headers["X-Next-After"] = cursor
        return resp

    @app.get("/api/v1/candles/{symbol:symbol}")
    async def candles(
        request: Request,
        symbol: str,
        interval: str = "1m",
        limit: int = Query(100, ge=1, le=10_000),
        since: str | None = SINCE,
        start: str | None = FROM,
        end: str | None = TO,
        until: str | None = UNTIL,
        after: str | None = Query(None, description="start (ns) of the last candle of the previous page"),
    ) -> Response:
        """OHLCV candles oldest first (1s, 1m and 1h from the history store beyond Redis's window)."""
        await market_data(request)
        rows, cursor = await reader.candles(symbol, interval, limit, since, start, end_of(end, until), after)
        return paged(rows, cursor)

    @app.get("/api/v1/signals/{symbol:symbol}")
    async def signals(request: Request, symbol: str, limit: int = Query(50, ge=1, le=10_000)) -> Response:
        await market_data(request)
        return rest_json(await store.signals(symbol, limit))

    # --- exchange -----------------------------------------------------------------

    @app.get("/api/v1/markets")
    async def markets(request: Request) -> Response:
        """Exchange markets with tick size, lot size and order size limits."""
        await market_data(request)
        return Response(await exchange.query("markets", {}), media_type="application/json")

    @app.post("/api/v1/orders", status_code=201)
    async def place(request: Request) -> Response:
        """Place an order; the answer comes from the stored events (accepted + fills, or rejected)."""
        claims = await user(request)
        order = await small_body(request, order_in_decoder, "order")
        if isinstance(order, Response):
            return order
        status, doc = order_result(await exchange.place(claims.email, order))
        return rest_json(doc, status)

    @app.patch("/api/v1/orders/{order_id}")
    async def amend(request: Request, order_id: int) -> Response:
        """Amend one of your open orders: {"price"?, "qty"?} (qty is the new total quantity)."""
        claims = await user(request)
        change = await small_body(request, amend_in_decoder, "amend")
        if isinstance(change, Response):
            return change
        status, doc = amend_result(await exchange.amend(claims.email, order_id, change))
        if status != 200:
            return error_response(status, doc["error"], doc["detail"])
        return rest_json(doc, 200)

    @app.delete("/api/v1/orders/{order_id}")
    async def cancel(request: Request, order_id: int, market: str | None = None) -> Response:
        """Cancel one of your open orders (market optional: it is looked up)."""
        claims = await user(request)
        if market is None:
            opens = msgspec.json.decode(await exchange.query("orders", {"user": claims.email}))
            mine = next((o for o in opens if o["order_id"] == order_id), None)
            if mine is None:  # the same code as the engine's answer when the market is named
                rejected = unknown_order(claims.email, "", order_id)
                return error_response(404, rejected["code"], rejected["reason"])
            market = mine["market"]
        events = await exchange.cancel(claims.email, market, order_id)
        status, doc = order_result(events)
        if status == 422:
            return error_response(404, doc["error"], doc["detail"])
        return rest_json(doc, 200)

    @app.delete("/api/v1/orders")
    async def cancel_all(request: Request, market: str | None = None) -> Response:
        """Cancel all your open orders, in one market or everywhere."""
        claims = await user(request)
        targets = [await exchange.known_market(market)] if market else await exchange.all_markets()
        events: list[dict[str, Any]] = []
        for mkt in targets:
            events.extend(await exchange.cancel_all(claims.email, mkt))
        cancelled = [e for e in events if e.get("event") == "cancelled"]
        return rest_json({"cancelled": len(cancelled), "events": events})

    @app.get("/api/v1/orders")
    async def orders(
        request: Request,
        market: str | None = None,
        all: bool = False,
        limit: int = Query(100, ge=1, le=1000),
        since: str | None = SINCE,
        start: str | None = FROM,
        until: str | None = UNTIL,
        after: str | None = Query(None, description="order id of the last order of the previous page"),
    ) -> Response:
        """Your open orders, oldest first, with status and filled quantity; with ``all=true`` also
        your order events (accepted, amended, cancelled...). A range or ``after`` pages both lists
        by order id (``X-Next-After``: the open list's last id when it is full)."""
        claims = await user(request)
        lo, hi = time_range(since, start, until)
        cursor = parse_after(after)
        if market is not None:
            market = await exchange.known_market(market)
        views = msgspec.json.decode(await exchange.query("orders", {"user": claims.email, "market": market}))
        fills = fills_by_order(claims.email, await exchange.trades_of(claims.email))
        opens, next_after = page(views, lambda o: o["ts"], lambda o: o["order_id"], lo, hi, cursor, limit)
        states = [open_state(o, fills.get(o["order_id"], [])) for o in opens]
        if not all:
            return paged(states, next_after)
        events = [h for h in await exchange.order_history(claims.email, 1000) if market in (None, h.get("market"))]
        if lo is None and hi is None and cursor is None:
            history = events[-limit:]
        else:
            history = [
                h
                for h in events
                if (lo is None or h["ts"] >= lo)
                and (hi is None or h["ts"] < hi)
                and (cursor is None or h.get("order_id", cursor + 1) > cursor)
            ][:limit]
        return paged({"open": states, "history": history}, next_after)

    @app.get("/api/v1/orders/{order_id}")
    async def get_order(request: Request, order_id: int) -> Response:
        """One of your orders, open or finished: status, filled quantity, average price, remaining.
        Anyone else's id is a 404, like an unknown one."""
        claims = await user(request)
        opens = msgspec.json.decode(await exchange.query("orders", {"user": claims.email}))
        history = await exchange.order_history(claims.email, 1000)
        state = order_state(claims.email, order_id, opens, history, await exchange.trades_of(claims.email))
        if state is None:
            raise NotFound(f"no order {order_id}", "see `stockctl orders --all`")
        return rest_json(state)

    @app.get("/api/v1/fills")
    async def fills(
        request: Request,
        limit: int = Query(100, ge=1, le=1000),
        since: str | None = SINCE,
        start: str | None = FROM,
        until: str | None = UNTIL,
        after: str | None = Query(None, description="trade id of the last fill of the previous page"),
    ) -> Response:
        """Your fills, oldest first: time, market, side, qty, price, fee, order id, trade id."""
        claims = await user(request)
        lo, hi = time_range(since, start, until)
        cursor = parse_after(after)
        views = [fill_view(claims.email, t) for t in await exchange.trades_of(claims.email)]
        rows, next_after = page(views, lambda f: f["ts"], lambda f: f["trade_id"], lo, hi, cursor, limit)
        return paged(rows, next_after)

    @app.get("/api/v1/balances")
    async def balances(request: Request) -> Response:
        """Available and reserved per asset (a new account is funded on first use)."""
        claims = await user(request)
        await exchange.ensure_funded(claims.email)
        return Response(await exchange.query("balances", {"user": claims.email}), media_type="application/json")

    @app.get("/api/v1/book/{market:symbol}")
    async def book(request: Request, market: str, depth: int = Query(20, ge=1, le=500)) -> Response:
        """Depth ladder: bids and asks as [price, qty, orders], best first."""
        await market_data(request)
        market = await exchange.known_market(market)
        return Response(await exchange.query("book", {"market": market, "depth": depth}), media_type="application/json")

    @app.get("/api/v1/trades/{market:symbol}")
    async def trades(
        request: Request,
        market: str,
        limit: int = Query(50, ge=1, le=1000),
        since: str | None = SINCE,
        start: str | None = FROM,
        until: str | None = UNTIL,
        after: str | None = Query(None, description="trade id of the last trade of the previous page"),
    ) -> Response:
        """A market's recent trades, oldest first: price, qty, taker side, trade id, time; no users."""
        await market_data(request)
        lo, hi = time_range(since, start, until)
        cursor = parse_after(after)
        recent = await exchange.recent_trades(market, limit if lo is None and hi is None and cursor is None else 1000)
        rows, next_after = page(recent, lambda t: t.ts, lambda t: t.trade_id, lo, hi, cursor, limit)
        return paged(rows, next_after)

    # --- price alerts -------------------------------------------------------------

    @app.post("/api/v1/alerts", status_code=201)
    async def add_alert(request: Request) -> Response:
        """Set a price alert: ``above``/``below`` a price, or ``cross-sma`` (the next SMA crossover)."""
        claims = await user(request)
        req = await small_body(request, alert_in_decoder, "alert")
        if isinstance(req, Response):
            return req
        try:
            return rest_json(await alerts.add(claims.email, req, store), 201)
        except TooManyAlerts as exc:
            return error_response(409, "too_many_alerts", str(exc))

    @app.get("/api/v1/alerts")
    async def list_alerts(request: Request) -> Response:
        """Your active alerts and your recently fired ones (oldest first)."""
        claims = await user(request)
        return rest_json(await alerts.listing(claims.email))

    @app.delete("/api/v1/alerts/{alert_id}")
    async def remove_alert(request: Request, alert_id: int) -> Response:
        """Remove one of your active alerts (anyone else's is a 404, like an unknown id)."""
        claims = await user(request)
        return rest_json(await alerts.remove(claims.email, alert_id))

    if ws_server is not None:

        @app.websocket(WS_PATH)
        async def full_ws(ws: WebSocket) -> None:
            await ws_server.serve_asgi(ws)

    auth_proxy.add_routes(app, proxy)

    gateway_seeds.add_routes(app, settings, store, exchange, keys, r, user, proxy)
    return app
