"""Read-side client of a running instance: latest prices, history, candles, signals, live quotes.

The CLI uses it; so can a bot. It finds the instance from the state dir
(``run/instance.json``, written by the supervisor) unless URLs are given.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import redis
from nats.aio.client import Client as NATS

from stockctl import names
from stockctl.errors import NotFound, NotRunningError, ServiceUnavailable
from stockctl.processing import quote_from_fields
from stockctl.settings import SYMBOL_RE, Settings, mask_url
from stockctl.wire import (
    Candle,
    PricePoint,
    Quote,
    Signal,
    candle_decoder,
    point_decoder,
    quote_decoder,
    signal_decoder,
)


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
        from stockctl.errors import UsageError

        raise UsageError(f"bad symbol {text!r}", "symbols are 1-32 of A-Z, 0-9 and _, starting with a letter")
    return sym


class MarketClient:
    """Synchronous reads from the processor's Redis state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nats_url, self.redis_url = resolve_urls(settings)
        self._r = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)

    def close(self) -> None:
        self._r.close()

    def __enter__(self) -> MarketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except redis.ConnectionError as exc:
            raise ServiceUnavailable(
                f"cannot reach Redis at {mask_url(self.redis_url)} ({exc})",
                "is the instance up? `stockctl status`",
            ) from None

    def symbols(self) -> list[str]:
        return sorted(s.decode() for s in self._call(self._r.smembers, names.SYMBOLS_KEY))

    def _known(self, symbol: str) -> str:
        sym = normalise_symbol(symbol)
        if not self._call(self._r.sismember, names.SYMBOLS_KEY, sym):
            known = ", ".join(self.symbols()) or "none yet"
            raise NotFound(f"unknown symbol {sym}", f"known symbols: {known}")
        return sym

    def quotes(self) -> list[Quote]:
        syms = self.symbols()
        pipe = self._r.pipeline(transaction=False)
        for sym in syms:
            pipe.hgetall(names.quote_key(sym))
        out = []
        for raw in self._call(pipe.execute):
            if raw and b"price" in raw:
                out.append(quote_from_fields({k.decode(): v.decode() for k, v in raw.items()}))
        return out

    def quote(self, symbol: str) -> Quote:
        sym = self._known(symbol)
        raw = self._call(self._r.hgetall, names.quote_key(sym))
        return quote_from_fields({k.decode(): v.decode() for k, v in raw.items()})

    def history(self, symbol: str, limit: int) -> list[PricePoint]:
        sym = self._known(symbol)
        raw = self._call(self._r.lrange, names.history_key(sym), -limit, -1)
        return [point_decoder.decode(b) for b in raw]

    def candles(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        sym = self._known(symbol)
        if interval not in self.settings.candle_intervals:
            from stockctl.errors import UsageError

            raise UsageError(
                f"no {interval} candles are kept", f"kept intervals: {', '.join(self.settings.candle_intervals)}"
            )
        raw = self._call(self._r.zrange, names.candles_key(sym, interval), -limit, -1)
        return [candle_decoder.decode(b) for b in raw]

    def signals(self, symbol: str, limit: int) -> list[Signal]:
        sym = self._known(symbol)
        raw = self._call(self._r.lrange, names.signals_key(sym), -limit, -1)
        return [signal_decoder.decode(b) for b in raw]


async def stream_updates(nats_url: str, symbols: list[str]) -> AsyncIterator[Quote | Signal]:
    """Live quotes and signals of ``symbols`` from NATS, until the caller stops iterating."""
    try:
        nc: NATS = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=-1, allow_reconnect=True)
    except Exception as exc:
        raise ServiceUnavailable(
            f"cannot reach NATS at {mask_url(nats_url)} ({exc})", "is the instance up? `stockctl status`"
        ) from None
    try:
        subs = []
        for sym in symbols:
            subs.append(await nc.subscribe(names.quote_subject(sym)))
            subs.append(await nc.subscribe(names.signal_subject(sym)))
        import asyncio

        queue: asyncio.Queue = asyncio.Queue()

        async def pump(sub) -> None:
            async for msg in sub.messages:
                await queue.put(msg)

        tasks = [asyncio.create_task(pump(sub)) for sub in subs]
        try:
            while True:
                msg = await queue.get()
                if msg.subject.startswith("md.signal."):
                    yield signal_decoder.decode(msg.data)
                else:
                    yield quote_decoder.decode(msg.data)
        finally:
            for t in tasks:
                t.cancel()
    finally:
        await nc.close()
