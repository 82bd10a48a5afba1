"""Keep one feed connected: connect, read, normalise, hand trades on; reconnect when it breaks.

Reconnects back off exponentially with jitter (:class:`~stockctl.runtime.retry.Backoff`: a random
50-100 % of ``min(max, min * 2**n)``, so many clients do not come back in step), reset once a
connection has delivered a trade. A
connection that stays silent too long is closed and made again: Coinbase sends a heartbeat
every second, so ``feed_silence_s`` without any frame means the connection is dead even if TCP
has not noticed. Binance's liveness is the WebSocket ping/pong: the server pings every 20 s
and ``websockets`` answers; our own keepalive pings (``feed_ping_interval_s``) close a
connection whose pongs stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import websockets
from websockets.asyncio.client import connect

from stockctl.feeds import FeedHealth, FeedRejected, MalformedFrame, Trade
from stockctl.feeds.binance import ServerShutdown
from stockctl.runtime.retry import Backoff

log = logging.getLogger("stockctl.feeds")


class Adapter(Protocol):
    exchange: str
    health: FeedHealth

    def url(self) -> str: ...

    async def on_open(self, ws: Any) -> None: ...

    def parse(self, raw: str | bytes) -> list[Trade]: ...


async def run_feed(
    adapter: Adapter,
    on_trades: Callable[[list[Trade]], Awaitable[None]],
    *,
    silence_s: float | None,
    ping_interval_s: float,
    backoff_min_s: float,
    backoff_max_s: float,
) -> None:
    """Run until cancelled.

    Not :func:`~stockctl.runtime.retry.retry`: a connection never "succeeds" for good, the
    backoff starts afresh after one that delivered, and an announced shutdown reconnects at once.
    """
    health = adapter.health
    backoff = Backoff(base=backoff_min_s, cap=backoff_max_s)
    attempt = 0
    while True:
        delivered = False
        immediate = False
        try:
            async with connect(
                adapter.url(),
                open_timeout=10,
                ping_interval=ping_interval_s,
                ping_timeout=ping_interval_s,
                close_timeout=2,
                max_size=4 * 1024 * 1024,
                max_queue=1024,
            ) as ws:
                health.connected, health.connects = True, health.connects + 1
                log.info("%s connected (%s)", health.name, "first" if health.connects == 1 else "reconnect")
                await adapter.on_open(ws)
                while True:
                    try:
                        raw = await (asyncio.wait_for(ws.recv(), silence_s) if silence_s else ws.recv())
                    except TimeoutError:
                        health.last_error = f"no frame for {silence_s:g}s (heartbeats stopped)"
                        log.warning("%s: %s; reconnecting", health.name, health.last_error)
                        break
                    health.seen()
                    try:
                        trades = adapter.parse(raw)
                    except MalformedFrame as exc:
                        health.malformed += 1
                        log.warning("%s: malformed frame skipped: %s: %.120r", health.name, exc, raw)
                        continue
                    if trades:
                        health.trades += len(trades)
                        health.last_trade = health.last_message
                        delivered = True
                        await on_trades(trades)
        except ServerShutdown:
            health.last_error = "server shutdown announced"
            log.info("%s: %s; reconnecting now", health.name, health.last_error)
            immediate = True
        except FeedRejected as exc:
            health.last_error = f"refused: {exc}"
            log.error("%s %s", health.name, health.last_error)
        except websockets.ConnectionClosed as exc:
            health.last_error = f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            log.warning("%s: %s; reconnecting", health.name, health.last_error)
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            health.last_error = f"cannot connect: {exc.__class__.__name__}: {exc}"
            log.warning("%s: %s", health.name, health.last_error)
        finally:
            health.connected = False
        if delivered or immediate:
            attempt = 0
        if not immediate:
            await asyncio.sleep(backoff.delay(attempt))
            attempt += 1
