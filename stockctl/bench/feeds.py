"""``stockctl bench feeds``: frames/s a feed adapter normalises, beside raw WebSocket receives.

A local ``websockets`` server sends N Binance combined-stream trade frames as fast as it can,
twice over fresh connections in the same run: once received raw (the baseline: what the
socket and the library cost), once received and normalised by :class:`BinanceAdapter` into
exact trades (JSON decode, checks, exact price/quantity, id gap tracking). Nothing else is
started; the ratio says how much of the socket's speed the adapter keeps.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from stockctl.feeds import FeedHealth
from stockctl.feeds.binance import BinanceAdapter
from stockctl.wire.feeds import parse_feed

DEFAULT_FRAMES = 200_000
QUICK_FRAMES = 20_000


@dataclass
class FeedsBenchResult:
    frames: int
    raw_per_s: float
    adapter_per_s: float
    trades: int

    @property
    def ratio(self) -> float:
        return self.adapter_per_s / self.raw_per_s if self.raw_per_s else 0.0

    def to_doc(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "raw_frames_per_s": round(self.raw_per_s),
            "adapter_frames_per_s": round(self.adapter_per_s),
            "ratio": round(self.ratio, 3),
            "trades": self.trades,
        }


def _frames(n: int) -> list[str]:
    return [
        json.dumps(
            {
                "stream": "btcusdt@trade",
                "data": {"e": "trade", "E": 1717000000000 + i, "s": "BTCUSDT", "t": i + 1}
                | {"p": f"{67000 + i % 1000}.{i % 100:02d}000000", "q": "0.00120000", "T": 1717000000000 + i}
                | {"m": True, "M": True},
            }
        )
        for i in range(n)
    ]


async def _run(n: int) -> FeedsBenchResult:
    frames = _frames(n)

    async def handler(ws: ServerConnection) -> None:
        for f in frames:
            await ws.send(f)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, max_queue=None) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/stream"

        async def receive(adapter: BinanceAdapter | None) -> tuple[float, int]:
            trades = 0
            async with connect(url, ping_interval=None, max_queue=4096) as ws:
                t0 = time.perf_counter()
                for _ in range(n):
                    raw = await ws.recv()
                    if adapter is not None:
                        trades += len(adapter.parse(raw))
                return n / (time.perf_counter() - t0), trades

        raw_rate, _ = await receive(None)
        spec = parse_feed("binance:BTCUSDT")
        adapter_rate, trades = await receive(BinanceAdapter(spec, url, FeedHealth("binance", spec.symbols)))
    return FeedsBenchResult(n, raw_rate, adapter_rate, trades)


def run_feeds_bench(frames: int) -> FeedsBenchResult:
    return asyncio.run(_run(frames))
