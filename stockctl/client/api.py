"""Synchronous REST client of a running instance's gateway, as the CLI uses it.

    from stockctl.client.api import GatewayClient
    from stockctl.settings import Settings

    with GatewayClient(Settings()) as gw:          # token from `stockctl login`
        print(gw.quote("AAPL").price)

Live channels are the SDK's (:mod:`stockctl.sdk.stream`: one WebSocket loop that renews the
token on the open socket, reconnects and fails over), and so is the async, typed client a bot
wants (:class:`stockctl.sdk.Client`). :func:`raise_for` maps a gateway error to the one-line
errors of :mod:`stockctl.errors`; the SDK's REST calls use it too.

The instance is found from the state dir (``run/instance.json``, written by the
supervisor); ``STOCKCTL_GATEWAY_URL`` points elsewhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from stockctl.alerts.rules import Alert, AlertAdded, AlertList
from stockctl.client.failover import FailoverHttp
from stockctl.errors import NotFound, ServiceUnavailable, UsageError
from stockctl.instance.registry import resolve_gateway_url
from stockctl.settings import Settings
from stockctl.wire.marketdata import Candle, PricePoint, Quote, Signal
from stockctl.wire.symbols import parse_symbol


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


raise_for = _raise_for  # the SDK maps errors the same way


IDEMPOTENT_TIMEOUT_S = 4.0
"""How long an order with a client order id waits for one gateway before it tries the next: a
little over a frozen matching daemon's takeover (3.3-3.8 s under load), well under the
gateway's own 10 s wait. Moving early costs nothing but a second path: the exchange stores
the order once, whichever gateways it came through."""


class GatewayClient:
    """Synchronous REST client of the gateway, authenticated with the stored login."""

    def __init__(self, settings: Settings, token: str | None = None) -> None:
        from stockctl.client.credentials import access_token

        self.token = token or access_token(settings)
        self._http = FailoverHttp(
            resolve_gateway_url(settings), timeout=10, headers={"Authorization": f"Bearer {self.token}"}
        )

    @property
    def base_url(self) -> str:
        """The gateway that answered last, of ``STOCKCTL_GATEWAY_URL``'s list (or the instance's)."""
        return self._http.base_url

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
            resp = self._http.request("GET", path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"cannot reach the gateway at {self._http.label} ({exc.__class__.__name__})",
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

    def _send(
        self, method: str, path: str, json_body: Any = None, order: bool = True, idempotent: bool = False, **params: Any
    ) -> Any:
        extra: dict[str, Any] = {"idempotent": True, "timeout": IDEMPOTENT_TIMEOUT_S} if idempotent else {}
        try:
            resp = self._http.request(
                method, path, json=json_body, params={k: v for k, v in params.items() if v is not None}, **extra
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # sent nowhere
            raise ServiceUnavailable(
                f"cannot reach the gateway at {self._http.label} ({exc.__class__.__name__})",
                "is the instance up? `stockctl status`",
            ) from None
        except httpx.HTTPError as exc:  # sent, and the answer lost: not resent to another gateway
            raise ServiceUnavailable(
                f"no answer from the gateway at {self.base_url} ({exc.__class__.__name__})",
                "it may have been applied: check `stockctl orders` before sending it again",
            ) from None
        if order and resp.status_code == 422:  # the exchange's refusal (elsewhere: bad input)
            body = resp.json()
            raise OrderRejected(body.get("detail") or "rejected", code=body.get("error", ""))
        _raise_for(resp)
        return resp.json()

    def place(self, order: dict[str, Any]) -> dict[str, Any]:
        """Place an order; one with a ``client_order_id`` goes on to the next gateway when one does
        not answer (the exchange stores it once, whichever gateways it came through)."""
        return self._send("POST", "/api/v1/orders", order, idempotent=bool(order.get("client_order_id")))

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
