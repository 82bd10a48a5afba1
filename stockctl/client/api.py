"""Client of a running instance, through its gateway: REST reads and live WebSocket channels.

The CLI uses it; so can a bot::

    from stockctl.client.api import GatewayClient, stream
    from stockctl.settings import Settings

    settings = Settings()
    with GatewayClient(settings) as gw:          # token from `stockctl login`
        print(gw.quote("AAPL").price)
    async for kind, channel, data in stream(settings, ["quotes:AAPL"]):
        ...

Streams use the stored login through :class:`stockctl.client.credentials.LiveSession`: the
access token is renewed on the open socket before it expires, so a stream lasts as long
as the login does (:func:`live_frames`, shared with the TUI).

The instance is found from the state dir (``run/instance.json``, written by the
supervisor); ``STOCKCTL_GATEWAY_URL`` / ``STOCKCTL_WS_URL`` point elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import msgspec
import websockets

from stockctl.alerts.rules import Alert, AlertAdded, AlertList
from stockctl.errors import NotFound, ServiceUnavailable, StockctlError, UsageError
from stockctl.instance.registry import resolve_gateway_url, resolve_ws_url
from stockctl.runtime.retry import Backoff
from stockctl.settings import Settings
from stockctl.wire.gateway import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, ServerFrame, server_frame_decoder
from stockctl.wire.marketdata import Candle, PricePoint, Quote, Signal
from stockctl.wire.symbols import parse_symbol

if TYPE_CHECKING:
    from stockctl.client.credentials import LiveSession, Session


def normalise_symbol(text: str) -> str:
    """A symbol from the command line, checked (UsageError naming the rule) and upper-cased."""
    return parse_symbol(text)


def symbol_path(text: str) -> str:
    """A symbol as one URL path segment: ``BTC/USDT`` is sent as ``BTC%2FUSDT``."""
    return quote(parse_symbol(text), safe="")


def _raise_for(resp: httpx.Response) -> None:
    """Turn a gateway error into the CLI's one-line errors, keeping the server's reason."""
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        detail = body.get("detail") or body.get("error") or resp.text
    except ValueError:
        detail = resp.text.strip() or resp.reason_phrase
    if resp.status_code == 401:
        from stockctl.client.credentials import NotLoggedIn

        raise NotLoggedIn(detail if isinstance(detail, str) else str(detail))
    if resp.status_code == 404:
        raise NotFound(str(detail))
    if resp.status_code in (400, 409, 413, 422, 429):
        raise UsageError(str(detail))
    raise ServiceUnavailable(f"gateway error {resp.status_code}: {detail}")


class GatewayClient:
    """Synchronous REST client of the gateway, authenticated with the stored login."""

    def __init__(self, settings: Settings, token: str | None = None) -> None:
        from stockctl.client.credentials import access_token

        self.base_url = resolve_gateway_url(settings)
        self.token = token or access_token(settings)
        self._http = httpx.Client(base_url=self.base_url, timeout=10, headers={"Authorization": f"Bearer {self.token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, type_: Any, **params: Any) -> Any:
        return self._page(path, type_, **params)[0]

    def symbols(self) -> list[str]:
        return self._get("/api/v1/symbols", list[str])

    def quotes(self) -> list[Quote]:
        return self._get("/api/v1/prices", list[Quote])

    def quote(self, symbol: str) -> Quote:
        return self._get(f"/api/v1/prices/{symbol_path(symbol)}", Quote)

    def history(self, symbol: str, limit: int) -> list[PricePoint]:
        return self._get(f"/api/v1/history/{symbol_path(symbol)}", list[PricePoint], limit=limit)

    def candles(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        return self._get(f"/api/v1/candles/{symbol_path(symbol)}", list[Candle], interval=interval, limit=limit)

    def _page(self, path: str, type_: Any, **params: Any) -> tuple[Any, str | None]:
        """One page of a ranged read and the cursor of the next (``X-Next-After``), if any."""
        try:
            resp = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"cannot reach the gateway at {self.base_url} ({exc.__class__.__name__})",
                "is the instance up? `stockctl status`",
            ) from None
        _raise_for(resp)
        return msgspec.json.decode(resp.content, type=type_), resp.headers.get("x-next-after")

    def history_range(self, symbol: str, limit: int, **range_: str | None) -> tuple[list[PricePoint], str | None]:
        """Points of a range (``since``, ``from``, ``to``, ``after``), paging until ``limit``."""
        return self._pages(f"/api/v1/history/{normalise_symbol(symbol)}", list[PricePoint], limit, range_)

    def candles_range(
        self, symbol: str, interval: str, limit: int, **range_: str | None
    ) -> tuple[list[Candle], str | None]:
        return self._pages(
            f"/api/v1/candles/{normalise_symbol(symbol)}", list[Candle], limit, {**range_, "interval": interval}
        )

    def _pages(self, path: str, type_: Any, limit: int, params: dict[str, str | None]) -> tuple[list[Any], str | None]:
        out: list[Any] = []
        cursor = params.get("after")
        while len(out) < limit:
            page, cursor = self._page(
                path, type_, **{**params, "after": cursor, "limit": min(10_000, limit - len(out))}
            )
            out += page
            if cursor is None:
                break
        return out, cursor

    def signals(self, symbol: str, limit: int) -> list[Signal]:
        return self._get(f"/api/v1/signals/{symbol_path(symbol)}", list[Signal], limit=limit)

    # --- exchange -------------------------------------------------------------------

    def _send(self, method: str, path: str, json_body: Any = None, order: bool = True, **params: Any) -> Any:
        try:
            resp = self._http.request(
                method, path, json=json_body, params={k: v for k, v in params.items() if v is not None}
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"cannot reach the gateway at {self.base_url} ({exc.__class__.__name__})",
                "is the instance up? `stockctl status`",
            ) from None
        if order and resp.status_code == 422:  # the exchange's refusal (elsewhere: bad input)
            body = resp.json()
            raise OrderRejected(body.get("detail") or "rejected", code=body.get("error", ""))
        _raise_for(resp)
        return resp.json()

    def place(self, order: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", "/api/v1/orders", order)

    def cancel(self, order_id: int, market: str | None = None) -> dict[str, Any]:
        return self._send("DELETE", f"/api/v1/orders/{order_id}", market=market)

    def amend(
        self, order_id: int, price: str | None = None, qty: str | None = None, market: str | None = None
    ) -> dict[str, Any]:
        """Change an open order's price and/or quantity (the new total). Raises NotFound for an id
        that is not your open order, OrderRejected (with ``code``) for a refused change."""
        body = {k: v for k, v in (("price", price), ("qty", qty), ("market", market)) if v is not None}
        return self._send("PATCH", f"/api/v1/orders/{order_id}", body)

    def cancel_all(self, market: str | None = None) -> dict[str, Any]:
        return self._send("DELETE", "/api/v1/orders", market=market)

    def orders(self, market: str | None = None, history: bool = False, limit: int = 100) -> Any:
        return self._send("GET", "/api/v1/orders", market=market, all="true" if history else None, limit=limit)

    def fills(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._send("GET", "/api/v1/fills", limit=limit)

    def balances(self) -> dict[str, dict[str, str]]:
        return self._send("GET", "/api/v1/balances")

    def book(self, market: str, depth: int = 20) -> dict[str, Any]:
        return self._send("GET", f"/api/v1/book/{symbol_path(market)}", depth=depth)

    def trades(self, market: str, limit: int = 50) -> list[dict[str, Any]]:
        return self._send("GET", f"/api/v1/trades/{symbol_path(market)}", limit=limit)

    def markets(self) -> list[dict[str, Any]]:
        return self._send("GET", "/api/v1/markets")

    # --- price alerts ---------------------------------------------------------------

    def add_alert(
        self, symbol: str, condition: str, threshold: str | None = None, side: str | None = None
    ) -> AlertAdded:
        body = {"symbol": symbol, "condition": condition, "threshold": threshold, "side": side}
        doc = self._send("POST", "/api/v1/alerts", {k: v for k, v in body.items() if v is not None}, order=False)
        return msgspec.convert(doc, AlertAdded)

    def alerts(self) -> AlertList:
        return msgspec.convert(self._send("GET", "/api/v1/alerts", order=False), AlertList)

    def remove_alert(self, alert_id: int) -> Alert:
        return msgspec.convert(self._send("DELETE", f"/api/v1/alerts/{alert_id}", order=False), Alert)


class OrderRejected(UsageError):
    """The exchange refused an order or cancel; the message is its reason."""

    exit_code = 5

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(f"rejected: {reason}")
        self.code = code


StateHandler = Callable[[str, str], None]
RENEW_ID = "renew"
"""The ``id`` of the ``auth`` messages that renew the token on an open socket."""


async def _keep_renewed(ws: websockets.ClientConnection, session: LiveSession, grant: Session) -> None:
    """Renew the socket's token before it expires: rotate, then ``{"op":"auth"}`` on the socket.

    Ends by closing the socket and raising NotLoggedIn when the login is gone. While auth
    cannot be reached it retries every second: the token on the socket is still valid, and
    if it expires first, the gateway's 4401 close takes the reconnect path.
    """
    from stockctl.client.credentials import NotLoggedIn

    while True:
        await asyncio.sleep(max(0.0, grant.renew_in()))
        try:
            fresh = await asyncio.to_thread(session.renew, grant.access_token)
        except NotLoggedIn:
            await ws.close(1000, "logged out")
            raise
        except StockctlError:
            await asyncio.sleep(1.0)
            continue
        if fresh.access_token != grant.access_token:
            await ws.send(json.dumps({"op": "auth", "token": fresh.access_token, "id": RENEW_ID}))
        grant = fresh


async def live_frames(
    settings: Settings,
    groups: list[list[str]],
    session: LiveSession,
    on_state: StateHandler | None = None,
    max_attempts: int | None = 30,
    max_backoff_s: float = 5.0,
) -> AsyncIterator[ServerFrame]:
    """Every frame of one WebSocket kept open: auth, one subscribe per group, renewal, reconnects.

    The subscribe of ``groups[i]`` carries ``id`` i + 1, so an error frame says which group
    it is about. While connected, the token is renewed before it expires on the open socket
    (the subscriptions stay; a ``welcome`` frame answers each renewal). When the gateway
    closes with 4401 (token refused or expired), it reconnects once at once with a fresh
    token; a second 4401 before a ``welcome``, a 4403, or a login that is gone raises
    NotLoggedIn. Other failures reconnect with backoff (``max_attempts`` in a row, None:
    forever); ``on_state`` hears ``("connecting", where)`` and ``("disconnected", why)``.
    """
    from stockctl.client.credentials import NotLoggedIn

    state: StateHandler = on_state or (lambda _state, _detail: None)
    backoff = Backoff(base=0.2, cap=max_backoff_s)  # jittered: clients of a restarted gateway do not return in step
    attempt, refused_once = 0, False
    pending: Session | None = None  # the fresh token to use after a 4401
    while True:
        grant: Session | None = None
        try:
            url = resolve_ws_url(settings)
            state("connecting", url if not attempt else f"attempt {attempt + 1}")
            grant = pending or await asyncio.to_thread(session.current)
            pending = None
            async with websockets.connect(url, open_timeout=5, max_size=2**22) as ws:
                await ws.send(json.dumps({"op": "auth", "token": grant.access_token}))
                for i, channels in enumerate(groups, 1):
                    await ws.send(json.dumps({"op": "subscribe", "channels": channels, "id": i}))
                renewer = asyncio.create_task(_keep_renewed(ws, session, grant)) if session.renewable else None
                try:
                    async for raw in ws:
                        f = server_frame_decoder.decode(raw)
                        if f.type == "welcome":
                            attempt, refused_once = 0, False
                        elif f.type == "error" and f.id == RENEW_ID:
                            continue  # the old token stays until it expires; then the 4401 path
                        yield f
                finally:
                    if renewer is not None:
                        renewer.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await renewer
                if renewer is not None and renewer.done() and not renewer.cancelled():
                    exc = renewer.exception()
                    if isinstance(exc, NotLoggedIn):
                        raise exc
            detail = "the gateway closed the connection"
        except websockets.ConnectionClosed as exc:
            close = exc.rcvd
            code = close.code if close is not None else None
            if code == CLOSE_UNAUTHORIZED and not refused_once and session.renewable and grant is not None:
                refused_once = True
                state("disconnected", "token refused; reconnecting with a fresh one")
                try:
                    pending = await asyncio.to_thread(session.renew, grant.access_token)
                except NotLoggedIn:
                    raise
                except StockctlError as err:
                    state("disconnected", str(err))
                else:
                    continue  # at once: the subscriptions come back with the new connection
            elif code in (CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN):
                raise NotLoggedIn(close.reason if close and close.reason else "the gateway refused the token") from None
            detail = f"connection lost ({close.reason if close and close.reason else 'closed'})"
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            detail = f"cannot reach the gateway ({exc.__class__.__name__})"
        except StockctlError as exc:
            if isinstance(exc, NotLoggedIn):
                raise
            detail = str(exc)
        state("disconnected", detail)
        if max_attempts is not None and attempt >= max_attempts:
            raise ServiceUnavailable(f"{detail} after {attempt} attempts", "is the instance up? `stockctl status`")
        await asyncio.sleep(backoff.delay(attempt))
        attempt += 1


async def stream(
    settings: Settings,
    channels: list[str],
    reconnect: bool = True,
    token: str | Callable[[], str] | None = None,
) -> AsyncIterator[tuple[str, str, msgspec.Raw]]:
    """Yield ``(type, channel, raw JSON data)`` for snapshots and updates of ``channels``.

    With the stored login (no ``token``) the session renews itself before the access token
    expires, on the open socket, so a stream runs for as long as the login lasts. Reconnects
    and resubscribes by itself when the gateway goes away (see :func:`live_frames`); an
    error frame about a channel (say, an unknown symbol) is raised.
    """
    from stockctl.client.credentials import LiveSession

    session = LiveSession(settings, token)
    async for f in live_frames(settings, [channels], session, max_attempts=30 if reconnect else 0):
        if f.type == "error":
            raise UsageError(f.detail or f.error or "gateway error")
        if f.channel is not None and len(f.data):
            yield f.type, f.channel, f.data
