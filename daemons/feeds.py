"""feeds: live exchange trades (Binance, Coinbase) onto JetStream ``md.tick.<SYM>``.

One connection per ``--feed`` (see :mod:`stockctl.feeds`), each kept up by
:func:`stockctl.feeds.runner.run_feed`. Every trade becomes a :class:`~stockctl.wire.Tick`
with the exchange's price (exact), trade time and quantity, our own per-symbol ``seq``
(consecutive, continuing across restarts, so the processor treats it exactly like the
simulator's) and ``origin`` naming the exchange trade id. Ticks go out through the
publisher's :class:`~daemons.publisher.TickPublisher` with ``Nats-Msg-Id`` ``<SYM>:<seq>``.

After a restart each symbol's last stored tick gives back its ``seq`` and the exchange id it
came from, so a trade the exchange sends again is dropped and a trade missed while down is
counted as a gap.

Health per feed (connected, last message time, reconnects, gaps and missed trades, duplicates,
malformed frames) is in ``run/feeds.json`` (``stockctl status`` shows it) and on ``/metrics``
as ``stockctl_feed_*{feed="binance"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack

from prometheus_client import Gauge

from daemons.publisher import TickPublisher, resume_points
from stockctl.feeds import FeedHealth, Trade
from stockctl.feeds.binance import BinanceAdapter
from stockctl.feeds.coinbase import CoinbaseAdapter
from stockctl.feeds.runner import run_feed
from stockctl.runtime.connections import open_nats
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.retry import pause, retry
from stockctl.settings import Settings
from stockctl.wire.feeds import parse_feed
from stockctl.wire.marketdata import Tick
from stockctl.wire.streams import ensure_tick_stream

log = logging.getLogger("stockctl.feeds")

REFRESH_S = 0.5
"""How often feed health goes to the status file and the gauges."""


def make_adapter(text: str, settings: Settings) -> BinanceAdapter | CoinbaseAdapter:
    spec = parse_feed(text)
    health = FeedHealth(spec.exchange, spec.symbols)
    if spec.exchange == "binance":
        return BinanceAdapter(spec, settings.feed_url_binance, health)
    return CoinbaseAdapter(spec, settings.feed_url_coinbase, health)


class Feeds(Daemon):
    """One child task per feed; a feed task that dies is a bug, and the daemon exits 1 for it."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.adapters = [make_adapter(text, settings) for text in settings.feeds]
        self.pub: TickPublisher | None = None
        self.seqs: dict[str, int] = {}
        self.feeds: list[asyncio.Task[None]] = []
        self.gauges: dict[str, Gauge] = {}

    async def startup(self, stack: AsyncExitStack) -> None:
        if not self.adapters:
            log.warning("no feeds configured (STOCKCTL_FEEDS / up --feed): nothing to do")
        nc = await open_nats(stack, self.ops, self.stop, log, on_reconnect=self._reconnected)
        js = nc.jetstream(publish_async_max_pending=4000)
        symbols = [sym for a in self.adapters for sym in a.spec.symbols]

        async def setup() -> dict[str, Tick]:
            await ensure_tick_stream(js, self.settings)
            return await resume_points(js, symbols, self.settings.partitions)

        last = await retry(setup, stop=self.stop, what="JetStream", logger=log)
        self.seqs = {sym: tick.seq for sym, tick in last.items()}
        for adapter in self.adapters:
            for sym in adapter.spec.symbols:
                if sym in last:
                    adapter.resume(sym, last[sym].origin)
        self.pub = TickPublisher(nc, js, self.stop, self.status, self.settings.partitions)
        ops = self.ops
        self.gauges = {
            "connected": ops.labelled_gauge("feed_connected", "1 while the feed's connection is up", ["feed"]),
            "age": ops.labelled_gauge("feed_last_message_age_seconds", "since the feed's last frame", ["feed"]),
            "gaps": ops.labelled_gauge("feed_gaps", "gaps in the exchange's trade ids", ["feed"]),
            "missed": ops.labelled_gauge("feed_missed_trades", "trades the gaps left out", ["feed"]),
            "reconnects": ops.labelled_gauge("feed_reconnects", "connections made again", ["feed"]),
            "malformed": ops.labelled_gauge("feed_malformed_frames", "frames skipped as unreadable", ["feed"]),
        }
        self.status.info |= {"mode": "feeds", "symbols": len(symbols)}
        self.refresh()

    async def main_loop(self) -> None:
        s = self.settings
        self.feeds = [
            self.spawn(
                run_feed(
                    a,
                    self.publish,
                    silence_s=s.feed_silence_s if a.exchange == "coinbase" else None,
                    ping_interval_s=s.feed_ping_interval_s,
                    backoff_min_s=s.feed_backoff_min_s,
                    backoff_max_s=s.feed_backoff_max_s,
                ),
                name=f"feed-{a.exchange}",
            )
            for a in self.adapters
        ]
        while not self.stop.is_set():
            self.refresh()
            self.status.write()  # twice as often as the base's writer: feed health is watched live
            await pause(REFRESH_S, self.stop)

    async def shutdown(self) -> None:
        for task in self.feeds:
            task.cancel()
        await asyncio.gather(*self.feeds, return_exceptions=True)
        if self.pub is not None:
            await self.pub.confirm()

    async def publish(self, trades: list[Trade]) -> None:
        assert self.pub is not None
        for t in trades:
            self.seqs[t.symbol] = self.seqs.get(t.symbol, 0) + 1
            await self.pub.publish(Tick(t.symbol, t.price, t.ts, self.seqs[t.symbol], 0, t.origin, t.qty))
        await self.pub.confirm(max(0, self.pub.pending - 100))  # a bounded number in flight

    def refresh(self) -> None:
        """Feed health into the status counters and info, and the labelled gauges."""
        counters, gauges = self.status.counters, self.gauges
        now = time.time()
        for key in ("gaps", "missed_trades", "malformed", "reconnects", "duplicates", "frames"):
            counters[key] = 0
        for a in self.adapters:
            h = a.health
            counters["gaps"] += h.gaps
            counters["missed_trades"] += h.missed
            counters["malformed"] += h.malformed
            counters["reconnects"] += h.reconnects
            counters["duplicates"] += h.duplicates
            counters["frames"] += h.frames
            gauges["connected"].labels(h.name).set(1 if h.connected else 0)
            gauges["age"].labels(h.name).set(now - h.last_message if h.last_message else float("nan"))
            gauges["gaps"].labels(h.name).set(h.gaps)
            gauges["missed"].labels(h.name).set(h.missed)
            gauges["reconnects"].labels(h.name).set(h.reconnects)
            gauges["malformed"].labels(h.name).set(h.malformed)
        self.status.info["feeds"] = {a.health.name: a.health.snapshot() for a in self.adapters}

    def _reconnected(self) -> None:
        if self.pub is not None:
            self.pub.reconnected()


DAEMON = Feeds

if __name__ == "__main__":
    main("feeds", Feeds)
