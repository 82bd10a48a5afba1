"""Binance spot trades over the public combined stream.

Protocol (Binance "WebSocket Streams" docs): connect to ``<base>/stream?streams=btcusdt@trade/
ethusdt@aggTrade`` (stream names are lower case); every event arrives wrapped as
``{"stream":"btcusdt@trade","data":{...}}``. A ``trade`` event carries ``s`` symbol, ``t`` trade
id, ``p`` price, ``q`` quantity, ``T`` trade time (ms); an ``aggTrade`` event carries ``a`` (the
aggregate id) instead of ``t``, plus ``f``/``l`` (first/last trade id). Both ids are consecutive
per symbol, so a jump is a gap. The server sends a ping frame every 20 s and drops a connection
that does not pong within a minute: the ``websockets`` client answers each ping with its
payload as soon as the frame is read, whatever the adapter is doing. A ``serverShutdown`` event
means reconnect now; a connection lives at most 24 h, after which the runner reconnects.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stockctl.feeds import FeedHealth, MalformedFrame, Trade, exact_price, exact_qty, int_field
from stockctl.wire.feeds import FeedSpec

DEFAULT_URL = "wss://stream.binance.com:9443/stream"

_ID_FIELD = {"trade": "t", "aggTrade": "a"}


class ServerShutdown(Exception):
    """Binance announced it is going away: reconnect at once (no error backoff)."""


class BinanceAdapter:
    """Frames of one combined-stream connection to trades."""

    exchange = "binance"

    def __init__(self, spec: FeedSpec, base_url: str, health: FeedHealth) -> None:
        self.spec, self.base_url, self.health = spec, base_url.rstrip("/"), health
        pairs = zip(spec.symbols, spec.streams, strict=True)
        self.by_stream = {f"{sym.lower()}@{kind}": (sym, kind) for sym, kind in pairs}

    def url(self) -> str:
        return f"{self.base_url}?streams={'/'.join(self.by_stream)}"

    async def on_open(self, ws: Any) -> None:
        """Nothing to send: the URL names the streams."""

    def resume(self, symbol: str, origin: str) -> None:
        """Carry on from the last stored tick's exchange id (``binance:<kind>:<id>``)."""
        exchange, kind, tid = ([*origin.split(":"), "", ""])[:3]
        if exchange == "binance" and tid.isdigit() and (symbol, kind) in self.by_stream.values():
            self.health.last_ids[f"{symbol}@{kind}"] = int(tid)

    def parse(self, raw: str | bytes) -> list[Trade]:
        try:
            doc = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise MalformedFrame(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise MalformedFrame("not a JSON object")
        if "result" in doc and "id" in doc:
            return []  # the answer to a SUBSCRIBE/LIST request
        data = doc.get("data")
        if (isinstance(data, dict) and data.get("e") == "serverShutdown") or doc.get("e") == "serverShutdown":
            raise ServerShutdown()
        stream = doc.get("stream")
        if not isinstance(stream, str) or not isinstance(data, dict):
            raise MalformedFrame("not a combined-stream event {stream, data}")
        target = self.by_stream.get(stream)
        if target is None:
            raise MalformedFrame(f"stream {stream[:40]!r} was not subscribed")
        symbol, kind = target
        if data.get("e") != kind:
            raise MalformedFrame(f"event {str(data.get('e'))[:20]!r} on stream {stream}")
        if str(data.get("s", "")).upper() != symbol:
            raise MalformedFrame(f"symbol {str(data.get('s'))[:20]!r} on stream {stream}")
        trade_id = int_field(data, _ID_FIELD[kind])
        trade = Trade(
            symbol=symbol,
            price=exact_price(data.get("p")),
            qty=exact_qty(data.get("q")),
            ts=int_field(data, "T") * 1_000_000,
            trade_id=trade_id,
            origin=f"binance:{kind}:{trade_id}",
        )
        if not self.health.check_id(f"{symbol}@{kind}", trade_id):
            return []
        return [trade]
