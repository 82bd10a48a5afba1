"""What a ``--feed`` value is: an exchange and its symbols, e.g. ``binance:BTCUSDT,ETHUSDT@aggTrade``.

Settings check ``STOCKCTL_FEEDS`` with it and the feeds daemon runs what it names; pure,
so that settings need not import the feed adapters.
"""

from __future__ import annotations

from dataclasses import dataclass

from stockctl.errors import UsageError
from stockctl.wire.symbols import parse_symbol

EXCHANGES = ("binance", "coinbase")
BINANCE_STREAMS = ("trade", "aggTrade")


@dataclass(frozen=True)
class FeedSpec:
    """One ``--feed`` value: an exchange and its symbols (Binance: each with its stream kind)."""

    exchange: str
    symbols: tuple[str, ...]
    streams: tuple[str, ...] = ()
    """Binance stream kind per symbol (``trade`` or ``aggTrade``); empty for Coinbase."""

    def __str__(self) -> str:
        if self.exchange == "binance":
            parts = [s if k == "trade" else f"{s}@{k}" for s, k in zip(self.symbols, self.streams, strict=True)]
            return f"binance:{','.join(parts)}"
        return f"{self.exchange}:{','.join(self.symbols)}"


_STREAM_KIND = {k.lower(): k for k in BINANCE_STREAMS}


def parse_feed(text: str) -> FeedSpec:
    """``binance:BTCUSDT,ETHUSDT@aggTrade`` or ``coinbase:BTC-USD`` as a spec, or UsageError."""
    exchange, sep, rest = text.strip().partition(":")
    exchange = exchange.strip().lower()
    if not sep or exchange not in EXCHANGES:
        raise UsageError(
            f"bad feed {text[:60]!r}",
            "use EXCHANGE:SYM[,SYM...] with exchange binance or coinbase, e.g. binance:BTCUSDT",
        )
    symbols: list[str] = []
    streams: list[str] = []
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        sym_text, at, kind = part.partition("@")
        if at and exchange != "binance":
            raise UsageError(f"bad feed {text[:60]!r}: {exchange} has no @stream kinds", "drop the @...")
        kind = _STREAM_KIND.get(kind.lower()) if at else "trade"
        if kind is None:
            raise UsageError(
                f"bad feed {text[:60]!r}: unknown Binance stream {part!r}",
                "use SYM@trade or SYM@aggTrade",
            )
        try:
            sym = parse_symbol(sym_text)
        except UsageError as exc:
            raise UsageError(f"bad feed {text[:60]!r}: {exc.message}", exc.hint) from None
        if sym in symbols:
            raise UsageError(f"bad feed {text[:60]!r}: {sym} twice", "name each symbol once (one stream kind each)")
        symbols.append(sym)
        streams.append(kind)
    if not symbols:
        raise UsageError(f"bad feed {text[:60]!r}: no symbols", f"e.g. {exchange}:BTCUSDT")
    return FeedSpec(exchange, tuple(symbols), tuple(streams) if exchange == "binance" else ())
