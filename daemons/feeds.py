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
import contextlib
import logging
import time
from contextlib import AsyncExitStack

from daemons.publisher import TickPublisher, _Hook, resume_points
from stockctl.feeds import FeedHealth, Trade, parse_feed
from stockctl.feeds.binance import BinanceAdapter
from stockctl.feeds.coinbase import CoinbaseAdapter
from stockctl.feeds.runner import run_feed
from stockctl.runtime.connections import open_nats
from stockctl.runtime.daemon import main, shutdown_event
from stockctl.runtime.ops import start_ops
from stockctl.runtime.retry import until_ready
from stockctl.runtime.service import ensure_tick_stream
from stockctl.runtime.status import StatusFile
from stockctl.settings import Settings
from stockctl.wire.marketdata import Tick

log = logging.getLogger("stockctl.feeds")


def make_adapter(text: str, settings: Settings) -> BinanceAdapter | CoinbaseAdapter:
    spec = parse_feed(text)
    health = FeedHealth(spec.exchange, spec.symbols)
    if spec.exchange == "binance":
        return BinanceAdapter(spec, settings.feed_url_binance, health)
    return CoinbaseAdapter(spec, settings.feed_url_coinbase, health)


async def run(settings: Settings) -> None:
    stop = shutdown_event()
    status = StatusFile(settings, "feeds")
    adapters = [make_adapter(text, settings) for text in settings.feeds]
    if not adapters:
        log.warning("no feeds configured (STOCKCTL_FEEDS / up --feed): nothing to do")

    async with AsyncExitStack() as stack:
        ops = await start_ops(stack, settings, "feeds", status)
        hook = _Hook()
        nc = await open_nats(stack, ops, stop, log, on_reconnect=hook)
        if nc is None:
            return
        js = nc.jetstream(publish_async_max_pending=4000)
        symbols = [sym for a in adapters for sym in a.spec.symbols]

        async def setup() -> dict[str, Tick]:
            await ensure_tick_stream(js, settings)
            return await resume_points(js, symbols)

        last = await until_ready(stop, log, "JetStream", setup)
        if last is None:
            return
        seqs = {sym: tick.seq for sym, tick in last.items()}
        for adapter in adapters:
            for sym in adapter.spec.symbols:
                if sym in last:
                    adapter.resume(sym, last[sym].origin)
        pub = TickPublisher(nc, js, stop, status)
        hook.target = pub.reconnected

        async def publish(trades: list[Trade]) -> None:
            for t in trades:
                seqs[t.symbol] = seqs.get(t.symbol, 0) + 1
                await pub.publish(Tick(t.symbol, t.price, t.ts, seqs[t.symbol], 0, t.origin, t.qty))
            await pub.confirm(max(0, pub.pending - 100))  # a bounded number in flight

        gauges = {
            "connected": ops.labelled_gauge("feed_connected", "1 while the feed's connection is up", ["feed"]),
            "age": ops.labelled_gauge("feed_last_message_age_seconds", "since the feed's last frame", ["feed"]),
            "gaps": ops.labelled_gauge("feed_gaps", "gaps in the exchange's trade ids", ["feed"]),
            "missed": ops.labelled_gauge("feed_missed_trades", "trades the gaps left out", ["feed"]),
            "reconnects": ops.labelled_gauge("feed_reconnects", "connections made again", ["feed"]),
            "malformed": ops.labelled_gauge("feed_malformed_frames", "frames skipped as unreadable", ["feed"]),
        }

        def refresh() -> None:
            now = time.time()
            for key in ("gaps", "missed_trades", "malformed", "reconnects", "duplicates", "frames"):
                status.counters[key] = 0
            for a in adapters:
                h = a.health
                status.counters["gaps"] += h.gaps
                status.counters["missed_trades"] += h.missed
                status.counters["malformed"] += h.malformed
                status.counters["reconnects"] += h.reconnects
                status.counters["duplicates"] += h.duplicates
                status.counters["frames"] += h.frames
                gauges["connected"].labels(h.name).set(1 if h.connected else 0)
                gauges["age"].labels(h.name).set(now - h.last_message if h.last_message else float("nan"))
                gauges["gaps"].labels(h.name).set(h.gaps)
                gauges["missed"].labels(h.name).set(h.missed)
                gauges["reconnects"].labels(h.name).set(h.reconnects)
                gauges["malformed"].labels(h.name).set(h.malformed)
            status.info["feeds"] = {a.health.name: a.health.snapshot() for a in adapters}

        status.ready = True
        status.info |= {"mode": "feeds", "symbols": len(symbols)}
        refresh()
        stack.callback(status.remove)
        tasks = [
            asyncio.create_task(
                run_feed(
                    a,
                    publish,
                    silence_s=settings.feed_silence_s if a.exchange == "coinbase" else None,
                    ping_interval_s=settings.feed_ping_interval_s,
                    backoff_min_s=settings.feed_backoff_min_s,
                    backoff_max_s=settings.feed_backoff_max_s,
                ),
                name=f"feed-{a.exchange}",
            )
            for a in adapters
        ]
        while not stop.is_set():
            refresh()
            status.write()
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # a bug, not a network problem: crash and be restarted
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pub.confirm()


if __name__ == "__main__":
    main("feeds", run)
