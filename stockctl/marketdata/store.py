"""Async reads of the processor's market data in Redis (the gateway serves these)."""

from __future__ import annotations

import redis.asyncio as aioredis

from stockctl.errors import NotFound, UsageError
from stockctl.marketdata.candles import parse_interval
from stockctl.marketdata.processing import quote_from_fields
from stockctl.wire import names
from stockctl.wire.marketdata import Candle, PricePoint, Quote, Signal, candle_decoder, point_decoder, signal_decoder
from stockctl.wire.symbols import parse_symbol

MAX_LIMIT = 10_000


def check_symbol(text: str) -> str:
    """Normalise a symbol from a client, or raise UsageError naming the rule."""
    return parse_symbol(text)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit {limit} out of range", f"use 1 to {MAX_LIMIT}")
    return limit


def _fields(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class MarketStore:
    """Latest quotes, history, candles and signals, as the processor keeps them."""

    def __init__(self, r: aioredis.Redis, intervals: list[str]) -> None:
        self.r = r
        self.intervals = intervals

    async def symbols(self) -> list[str]:
        return sorted(s.decode() for s in await self.r.smembers(names.SYMBOLS_KEY))

    async def known(self, symbol: str) -> str:
        sym = check_symbol(symbol)
        if not await self.r.sismember(names.SYMBOLS_KEY, sym):
            known = ", ".join(await self.symbols()) or "none yet"
            raise NotFound(f"unknown symbol {sym}", f"known symbols: {known}")
        return sym

    async def quotes(self) -> list[Quote]:
        syms = await self.symbols()
        async with self.r.pipeline(transaction=False) as pipe:
            for sym in syms:
                pipe.hgetall(names.quote_key(sym))
            raws = await pipe.execute()
        return [quote_from_fields(_fields(raw)) for raw in raws if raw and b"price" in raw]

    async def quote(self, symbol: str) -> Quote:
        sym = await self.known(symbol)
        raw = await self.r.hgetall(names.quote_key(sym))
        if b"price" not in raw:
            # Listed before its first batch is stored: the processor adds a symbol to the set
            # on its own (the set and the symbol's keys are in different cluster slots).
            raise NotFound(f"no price for {sym} yet", "try again in a moment")
        return quote_from_fields(_fields(raw))

    async def history(self, symbol: str, limit: int) -> list[PricePoint]:
        sym = await self.known(symbol)
        raw = await self.r.lrange(names.history_key(sym), -check_limit(limit), -1)
        return [point_decoder.decode(b) for b in raw]

    def check_interval(self, interval: str) -> str:
        try:
            parse_interval(interval)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if interval not in self.intervals:
            raise UsageError(f"no {interval} candles are kept", f"kept intervals: {', '.join(self.intervals)}")
        return interval

    async def candles(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        sym = await self.known(symbol)
        iv = self.check_interval(interval)
        raw = await self.r.zrange(names.candles_key(sym, iv), -check_limit(limit), -1)
        return [candle_decoder.decode(b) for b in raw]

    async def signals(self, symbol: str, limit: int) -> list[Signal]:
        sym = await self.known(symbol)
        raw = await self.r.lrange(names.signals_key(sym), -check_limit(limit), -1)
        return [signal_decoder.decode(b) for b in raw]
