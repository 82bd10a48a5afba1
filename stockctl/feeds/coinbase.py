"""Coinbase Exchange trades over the public ``matches`` channel, watched by ``heartbeat``.

Protocol (Coinbase Exchange "WebSocket Feed" docs): connect to ``wss://ws-feed.exchange.coinbase.com``
and, within 5 s, send ``{"type":"subscribe","product_ids":[...],"channels":["matches","heartbeat"]}``;
the server confirms with ``{"type":"subscriptions",...}``. The first trade per product is a
``last_match`` (the most recent trade, usually one we have already), then ``match`` messages:
``trade_id``, ``sequence``, ``time`` (ISO 8601, microseconds), ``product_id``, ``size``, ``price``,
``side``. ``trade_id`` is consecutive per product, so a jump is a gap; ``sequence`` counts every
message of the product's full feed (the matches channel sees only some), so it is not used for
gaps, only to drop a message older than one already seen on this connection. Heartbeats come
once a second per product with ``last_trade_id``: one past ours means matches were dropped (a
``last_trade_id`` of 0, which the feed has been seen to send, says nothing). An ``error``
message (an unknown product, say) closes the connection and the runner retries after a backoff.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from stockctl.feeds import FeedHealth, FeedRejected, MalformedFrame, Trade, exact_price, exact_qty, int_field, iso_to_ns
from stockctl.wire.feeds import FeedSpec

DEFAULT_URL = "wss://ws-feed.exchange.coinbase.com"


class CoinbaseAdapter:
    """Frames of one ws-feed connection to trades."""

    exchange = "coinbase"

    def __init__(self, spec: FeedSpec, base_url: str, health: FeedHealth) -> None:
        self.spec, self.base_url, self.health = spec, base_url, health
        self.products = set(spec.symbols)
        self.sequence: dict[str, int] = {}  # per connection: the feed's order within it

    def url(self) -> str:
        return self.base_url

    def subscribe_message(self) -> str:
        products = list(self.spec.symbols)
        return json.dumps({"type": "subscribe", "product_ids": products, "channels": ["matches", "heartbeat"]})

    async def on_open(self, ws: Any) -> None:
        self.sequence.clear()
        await ws.send(self.subscribe_message())

    def resume(self, symbol: str, origin: str) -> None:
        exchange, kind, tid = ([*origin.split(":"), "", ""])[:3]
        if exchange == "coinbase" and kind == "match" and tid.isdigit() and symbol in self.products:
            self.health.last_ids[symbol] = int(tid)

    def _product(self, doc: dict[str, Any]) -> str:
        product = doc.get("product_id")
        if not isinstance(product, str) or product not in self.products:
            raise MalformedFrame(f"product {str(product)[:40]!r} was not subscribed")
        return product

    def _in_order(self, product: str, doc: dict[str, Any]) -> bool:
        seq = int_field(doc, "sequence")
        last = self.sequence.get(product)
        if last is not None and seq <= last:
            return False
        self.sequence[product] = seq
        return True

    def parse(self, raw: str | bytes) -> list[Trade]:
        try:
            doc = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise MalformedFrame(f"not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise MalformedFrame("not a JSON object with a type")
        kind = doc["type"]
        if kind in ("match", "last_match"):
            product = self._product(doc)
            trade_id = int_field(doc, "trade_id")
            trade = Trade(
                symbol=product,
                price=exact_price(doc.get("price")),
                qty=exact_qty(doc.get("size")),
                ts=iso_to_ns(doc.get("time")),
                trade_id=trade_id,
                origin=f"coinbase:match:{trade_id}",
            )
            if not self._in_order(product, doc):
                self.health.duplicates += 1
                return []
            if not self.health.check_id(product, trade_id):
                return []
            return [trade]
        if kind == "heartbeat":
            product = self._product(doc)
            self._in_order(product, doc)
            announced = int_field(doc, "last_trade_id")
            last = self.health.last_ids.get(product)
            if announced and last is not None and announced > last:
                # Matches up to `announced` happened and did not reach us: a gap now, not
                # only when the next match arrives (which may be long on a quiet product).
                self.health.gap(product, last, announced + 1)
                self.health.last_ids[product] = announced
            return []
        if kind == "error":
            raise FeedRejected(f"{str(doc.get('message'))[:120]}: {str(doc.get('reason'))[:200]}")
        return []  # subscriptions, and types added later: the docs say to ignore them
