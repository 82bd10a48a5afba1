"""Turns WebSocket frames into typed messages; keeps each market's book between deltas.

Quotes, the one high-rate feed, are not a message each: they are kept in arrival order until the
app takes them (:meth:`FrameRouter.take_quotes`, every 50 ms) and applies them in one batch.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from textual.message import Message

from stockctl.alerts.rules import Alert, AlertList
from stockctl.wire.marketdata import Quote, Signal
from tui.messages import (
    AlertFired,
    AlertsSnapshot,
    BookChanged,
    OpenOrdersSnapshot,
    OrderEventArrived,
    SignalsArrived,
    TradesArrived,
)

_quote = msgspec.json.Decoder(Quote)
_signal = msgspec.json.Decoder(Signal)
_signals = msgspec.json.Decoder(list[Signal])
_any = msgspec.json.Decoder()
_alert = msgspec.json.Decoder(Alert)
_alert_list = msgspec.json.Decoder(AlertList)

BOOK_DEPTH = 20


def _dec(text: str) -> Decimal:
    try:
        return Decimal(text)
    except (InvalidOperation, TypeError):
        return Decimal(0)


class Book:
    """One market's price levels, from a snapshot plus sequence-numbered deltas."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last: str | None = None
        self.seq = 0

    def apply(self, doc: dict[str, Any], snapshot: bool) -> None:
        if snapshot or doc.get("type") == "snapshot":
            self.bids = {str(lvl[0]): str(lvl[1]) for lvl in doc.get("bids", [])}
            self.asks = {str(lvl[0]): str(lvl[1]) for lvl in doc.get("asks", [])}
        else:
            for side, levels in ((self.bids, doc.get("bids", [])), (self.asks, doc.get("asks", []))):
                for lvl in levels:
                    price, qty = str(lvl[0]), str(lvl[1])
                    if _dec(qty) == 0:
                        side.pop(price, None)
                    else:
                        side[price] = qty
        self.last = doc.get("last") or self.last
        self.seq = int(doc.get("seq") or self.seq)

    def ladder(self) -> tuple[list[list[str]], list[list[str]]]:
        bids = sorted(([p, q] for p, q in self.bids.items()), key=lambda x: -_dec(x[0]))[:BOOK_DEPTH]
        asks = sorted(([p, q] for p, q in self.asks.items()), key=lambda x: _dec(x[0]))[:BOOK_DEPTH]
        return bids, asks


class FrameRouter:
    """Frame -> message(s). Unknown or malformed frames give nothing (never an exception)."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.quotes: list[Quote] = []

    def take_quotes(self) -> list[Quote]:
        """The quotes routed since the last call, oldest first."""
        taken, self.quotes = self.quotes, []
        return taken

    def route(self, kind: str, channel: str, data: bytes) -> list[Message]:
        try:
            return self._route(kind, channel, data)
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError, ValueError, IndexError):
            return []

    def _route(self, kind: str, channel: str, data: bytes) -> list[Message]:
        family, _, name = channel.partition(":")
        if family == "quotes":
            if data != b"null":
                self.quotes.append(_quote.decode(data))
            return []
        if family == "signals":
            sigs = _signals.decode(data) if kind == "snapshot" else [_signal.decode(data)]
            return [SignalsArrived(sigs)]
        if family == "book":
            book = self.books.setdefault(name, Book())
            doc = _any.decode(data)
            book.apply(doc, kind == "snapshot")
            bids, asks = book.ladder()
            return [BookChanged(name, bids, asks, book.last, book.seq)]
        if family == "trades":
            doc = _any.decode(data)
            trades = doc if isinstance(doc, list) else [doc]
            return [TradesArrived(name, [t for t in trades if isinstance(t, dict)], kind == "snapshot")]
        if family == "orders":
            doc = _any.decode(data)
            if kind == "snapshot":
                return [OpenOrdersSnapshot(doc if isinstance(doc, list) else [])]
            return [OrderEventArrived(doc)] if isinstance(doc, dict) else []
        if family == "alerts":
            if kind == "snapshot":
                listing = _alert_list.decode(data)
                return [AlertsSnapshot(listing.active, listing.fired)]
            return [AlertFired(_alert.decode(data))]
        return []
