"""Client of a running instance, through its gateway: REST reads and live WebSocket channels.

The CLI uses it; so can a bot::

    from stockctl.client import GatewayClient, stream
    from stockctl.settings import Settings

    settings = Settings()
    with GatewayClient(settings) as gw:          # token from `stockctl login`
        print(gw.quote("AAPL").price)
    async for kind, channel, data in stream(settings, ["quotes:AAPL"]):
        ...

The instance is found from the state dir (``run/instance.json``, written by the
supervisor); ``STOCKCTL_GATEWAY_URL`` / ``STOCKCTL_WS_URL`` point elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import websockets

from stockctl.alerts import Alert, AlertAdded, AlertList
from stockctl.errors import NotFound, NotRunningError, ServiceUnavailable, UsageError
from stockctl.settings import SYMBOL_RE, Settings
from stockctl.wire import Candle, PricePoint, Quote, Signal


def instance_path(settings: Settings) -> Path:
    return settings.run_dir / "instance.json"


def write_instance(settings: Settings) -> None:
    """Record how to reach this instance (0600: URLs may hold passwords)."""
    path = instance_path(settings)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(
            {
                "nats_url": settings.effective_nats_url,
                "redis_url": settings.effective_redis_url,
                "auth_url": settings.effective_auth_url,
                "gateway_url": settings.gateway_url,
                "ws_url": settings.ws_url,
            },
            fh,
        )
    tmp.replace(path)


def resolve_urls(settings: Settings) -> tuple[str, str]:
    """NATS and Redis URLs: explicit settings first, then the running instance's record."""
    nats_url, redis_url = settings.nats_url, settings.redis_url
    if nats_url and redis_url:
        return nats_url, redis_url
    try:
        doc = json.loads(instance_path(settings).read_text())
    except (OSError, ValueError):
        raise NotRunningError(str(settings.home)) from None
    return nats_url or doc["nats_url"], redis_url or doc["redis_url"]


def resolve_gateway_url(settings: Settings) -> str:
    """Base URL of the gateway of the running instance (``STOCKCTL_GATEWAY_URL`` wins)."""
    explicit = os.environ.get("STOCKCTL_GATEWAY_URL")
    if explicit:
        return explicit.rstrip("/")
    try:
        doc = json.loads(instance_path(settings).read_text())
    except (OSError, ValueError):
        raise NotRunningError(str(settings.home)) from None
    return str(doc.get("gateway_url") or settings.gateway_url).rstrip("/")


def resolve_auth_url(settings: Settings) -> str:
    """Base URL of the auth daemon of the running instance."""
    try:
        doc = json.loads(instance_path(settings).read_text())
    except (OSError, ValueError):
        raise NotRunningError(str(settings.home)) from None
    return str(doc.get("auth_url") or settings.effective_auth_url).rstrip("/")


def normalise_symbol(text: str) -> str:
    sym = text.strip().upper()
    if not SYMBOL_RE.match(sym):
        raise UsageError(f"bad symbol {text!r}", "symbols are 1-32 of A-Z, 0-9 and _, starting with a letter")
    return sym


def resolve_ws_url(settings: Settings) -> str:
    explicit = os.environ.get("STOCKCTL_WS_URL")
    if explicit:
        return explicit
    try:
        doc = json.loads(instance_path(settings).read_text())
    except (OSError, ValueError):
        raise NotRunningError(str(settings.home)) from None
    return str(doc.get("ws_url") or settings.ws_url)


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
        from stockctl.credentials import NotLoggedIn

        raise NotLoggedIn(detail if isinstance(detail, str) else str(detail))
    if resp.status_code == 404:
        raise NotFound(str(detail))
    if resp.status_code in (400, 409, 413, 422, 429):
        raise UsageError(str(detail))
    raise ServiceUnavailable(f"gateway error {resp.status_code}: {detail}")


class GatewayClient:
    """Synchronous REST client of the gateway, authenticated with the stored login."""

    def __init__(self, settings: Settings, token: str | None = None) -> None:
        from stockctl.credentials import access_token

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
        try:
            resp = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"cannot reach the gateway at {self.base_url} ({exc.__class__.__name__})",
                "is the instance up? `stockctl status`",
            ) from None
        _raise_for(resp)
        return msgspec.json.decode(resp.content, type=type_)

    def symbols(self) -> list[str]:
        return self._get("/api/v1/symbols", list[str])

    def quotes(self) -> list[Quote]:
        return self._get("/api/v1/prices", list[Quote])

    def quote(self, symbol: str) -> Quote:
        return self._get(f"/api/v1/prices/{normalise_symbol(symbol)}", Quote)

    def history(self, symbol: str, limit: int) -> list[PricePoint]:
        return self._get(f"/api/v1/history/{normalise_symbol(symbol)}", list[PricePoint], limit=limit)

    def candles(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        return self._get(f"/api/v1/candles/{normalise_symbol(symbol)}", list[Candle], interval=interval, limit=limit)

    def signals(self, symbol: str, limit: int) -> list[Signal]:
        return self._get(f"/api/v1/signals/{normalise_symbol(symbol)}", list[Signal], limit=limit)

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
        return self._send("GET", f"/api/v1/book/{normalise_symbol(market)}", depth=depth)

    def trades(self, market: str, limit: int = 50) -> list[dict[str, Any]]:
        return self._send("GET", f"/api/v1/trades/{normalise_symbol(market)}", limit=limit)

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


class Frame(msgspec.Struct):
    """A server frame on the WebSocket."""

    type: str
    channel: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")
    error: str | None = None
    detail: str | None = None


_frame_decoder = msgspec.json.Decoder(Frame)


async def stream(
    settings: Settings,
    channels: list[str],
    reconnect: bool = True,
    token: str | Callable[[], str] | None = None,
) -> AsyncIterator[tuple[str, str, msgspec.Raw]]:
    """Yield ``(type, channel, raw JSON data)`` for snapshots and updates of ``channels``.

    Reconnects (with a fresh token) and resubscribes by itself when the gateway goes
    away; an error frame about a channel (say, an unknown symbol) is raised.
    """
    if isinstance(token, str):
        fixed = token
        get_token: Callable[[], str] = lambda: fixed  # noqa: E731
    elif token is not None:
        get_token = token
    else:
        from stockctl.credentials import access_token

        get_token = lambda: access_token(settings)  # noqa: E731
    url = resolve_ws_url(settings)
    attempt = 0
    while True:
        try:
            async with websockets.connect(url, open_timeout=5, max_size=2**22) as ws:
                await ws.send(json.dumps({"op": "auth", "token": get_token()}))
                await ws.send(json.dumps({"op": "subscribe", "channels": channels, "id": 1}))
                attempt = 0
                async for raw in ws:
                    f = _frame_decoder.decode(raw)
                    if f.type == "error":
                        raise UsageError(f.detail or f.error or "gateway error")
                    if f.channel is not None and len(f.data):
                        yield f.type, f.channel, f.data
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            close = getattr(exc, "rcvd", None)
            if close is not None and close.code in (4401, 4403):
                from stockctl.credentials import NotLoggedIn

                raise NotLoggedIn(close.reason or "the gateway refused the token") from None
            if not reconnect or attempt >= 30:
                raise ServiceUnavailable(
                    f"cannot reach the gateway at {url} ({exc.__class__.__name__})",
                    "is the instance up? `stockctl status`",
                ) from None
            await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
            attempt += 1
