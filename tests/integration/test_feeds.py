"""Live feeds end to end: `stockctl up --feed ...` against local servers speaking Binance's and
Coinbase's documented protocols from shipped frames (tests/support/feeds/*.jsonl): a disconnect
mid-stream, id gaps, malformed frames, duplicates, pings that must be answered, heartbeats that
stop. Real nats-server, valkey-server, processor and feeds daemons; no mocks."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from stockctl.history.sqlite import SqliteStore
from stockctl.wire import names
from stockctl.wire.marketdata import candle_decoder, point_decoder
from tests.support.cli import Cli
from tests.support.feedserver import FeedServer
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration


def ms(t: int) -> int:
    return t * 1_000_000


def iso_ns(text: str) -> int:
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


BTCUSDT = [  # (price, ts, seq) as the processor must store them
    ("67012.34", ms(1717000000123), 1),
    ("67012.35", ms(1717000000300), 2),
    ("67020.00", ms(1717000005000), 3),
    ("67020.01", ms(1717000005100), 4),
    ("67019.99", ms(1717000005500), 5),
]
ETHUSDT = [("3501.10", ms(1717000000501), 1), ("3501.25", ms(1717000005201), 2)]
BTC_USD = [
    ("67010.01", iso_ns("2024-05-29T16:26:40.123456Z"), 1),
    ("67010.02", iso_ns("2024-05-29T16:26:41.500000Z"), 2),
    ("67009.50", iso_ns("2024-05-29T16:26:42.250000Z"), 3),
    ("67011.00", iso_ns("2024-05-29T16:26:50.000100Z"), 4),
    ("67012.00", iso_ns("2024-05-29T16:27:00.999999Z"), 5),
]


def history(r: redis.Redis, sym: str) -> list[tuple[str, int, int]]:
    return [(p.price, p.ts, p.seq) for p in map(point_decoder.decode, r.lrange(names.history_key(sym), 0, -1))]


@pytest.fixture
def exchanges():
    binance = FeedServer.from_file("binance.jsonl").start()
    coinbase = FeedServer.from_file("coinbase.jsonl").start()
    yield binance, coinbase
    binance.stop()
    coinbase.stop()


def test_feeds_reach_redis_exactly_and_status_reports_gaps_and_reconnects(clean, exchanges, tmp_path: Path) -> None:
    binance, coinbase = exchanges
    cli = Cli(tmp_path / "home")
    cli.env |= {
        "STOCKCTL_FEED_URL_BINANCE": f"{binance.url}/stream",
        "STOCKCTL_FEED_URL_COINBASE": coinbase.url,
        "STOCKCTL_FEED_SILENCE_S": "1.5",
        "STOCKCTL_FEED_BACKOFF_MIN_S": "0.05",
        "STOCKCTL_FEED_BACKOFF_MAX_S": "0.2",
        "STOCKCTL_HISTORY_RETENTION": "0",  # the frames' trades are from 2024: keep them
    }
    r = redis.Redis.from_url(clean.redis_url)
    try:
        # Act: the feeds instead of the simulator
        up = cli.run(
            "up",
            "--only",
            "processor,feeds,history",
            "--nats-url",
            clean.nats_url,
            "--redis-url",
            clean.redis_url,
            "--feed",
            "binance:BTCUSDT,ETHUSDT@aggTrade",
            "--feed",
            "coinbase:BTC-USD",
            check=True,
        )
        assert "feeds" in up.stdout

        # Assert: every good trade arrives once, exact, with the exchange's time, in order
        wait_for(lambda: len(history(r, "BTCUSDT")) == 5 and len(history(r, "BTC-USD")) == 5, 30, what="feed ticks")
        wait_for(lambda: len(history(r, "ETHUSDT")) == 2, 10, what="aggTrade ticks")
        assert history(r, "BTCUSDT") == BTCUSDT
        assert history(r, "ETHUSDT") == ETHUSDT
        assert history(r, "BTC-USD") == BTC_USD
        assert r.hget(names.quote_key("BTC-USD"), "price") == b"67012.00"

        # exact quantities: the day's and the candles' sums, and every tick's in the history store
        assert r.hmget(names.quote_key("BTC-USD"), "qty", "volume") == [b"1.961", b"1"]  # 0.5+0.01+1.25+0.001+0.2
        [minute] = [candle_decoder.decode(b) for b in r.zrange(names.candles_key("BTCUSDT", "1m"), 0, -1)]
        assert (minute.qty, minute.volume, minute.count) == ("0.8312", 0, 5)
        store = SqliteStore(cli.home / "data" / "history.sqlite3", read_only=True)
        wait_for(lambda: store.count("BTC-USD") == 5, 20, what="feed ticks in the history store")
        assert [t.qty for t in store.ticks("BTC-USD")] == [50_000_000, 1_000_000, 125_000_000, 100_000, 20_000_000]
        assert [c.qty for c in store.candles("BTC-USD", "1m")] == ["1.761", "0.2"]  # 16:26 and 16:27
        store.close()
        rows = list(csv.DictReader(io.StringIO(cli.run("export", "BTC-USD", "--from", "0", check=True).stdout)))
        assert [(row["qty"], row["volume"]) for row in rows] == [
            (q, "0") for q in ("0.5", "0.01", "1.25", "0.001", "0.2")
        ]

        # the exchanges' protocols: the streams in the URL, the documented subscribe, pongs
        assert binance.paths[0] == "/stream?streams=btcusdt@trade/ethusdt@aggTrade"
        assert coinbase.subscribes[0] == {
            "type": "subscribe",
            "product_ids": ["BTC-USD"],
            "channels": ["matches", "heartbeat"],
        }
        assert binance.pongs == [("binance-ping-1", True), ("binance-ping-2", True)]
        assert coinbase.pongs == [("coinbase-ping", True)]
        assert binance.connections == 3  # after the disconnect, and after serverShutdown
        wait_for(lambda: coinbase.connections == 4, 10, what="coinbase back after silence, drop, refusal")

        # status: health per feed
        def feeds() -> dict:
            rows = cli.json("status")
            row = next(r for r in rows if r["name"] == "feeds")
            f = row.get("feeds") or {}
            return f if f.get("coinbase", {}).get("connected") and f.get("binance", {}).get("connected") else {}

        health = wait_for(feeds, 10, what="both feeds connected in status")
        b, c = health["binance"], health["coinbase"]
        assert (b["gaps"], b["missed"], b["reconnects"], b["malformed"], b["trades"]) == (2, 5, 2, 2, 7)
        assert (c["gaps"], c["missed"], c["reconnects"], c["malformed"], c["duplicates"], c["trades"]) == (
            2,
            3,
            3,
            1,
            2,
            5,
        )
        assert c["last_message_age_s"] is not None and c["last_message_age_s"] < 2  # heartbeats keep coming
        assert b["symbols"] == ["BTCUSDT", "ETHUSDT"]
        text = cli.run("status", check=True).stdout
        assert "feed binance" in text and "feed coinbase" in text and "gaps 2 (5 trades missed)" in text

        # metrics, per feed
        ops = next(r for r in cli.json("status") if r["name"] == "feeds")["ops"]
        metrics = httpx.get(f"{ops}/metrics", timeout=5).text
        assert 'stockctl_feed_gaps{feed="binance"} 2.0' in metrics
        assert 'stockctl_feed_missed_trades{feed="coinbase"} 3.0' in metrics
        assert 'stockctl_feed_connected{feed="coinbase"} 1.0' in metrics
    finally:
        cli.run("down", timeout=120)


def test_a_restarted_feed_carries_on_its_sequence_and_drops_what_it_already_had(clean, daemons, tmp_path) -> None:
    from tests.support.stack import make_settings

    first = FeedServer(
        [
            {"frame": _bn(1, "100.00")},
            {"frame": _bn(2, "100.01")},
            {"silence": True},
        ]
    ).start()
    settings = make_settings(
        clean, tmp_path / "home", feeds=["binance:BTCUSDT"], feed_url_binance=f"{first.url}/stream"
    )
    r = redis.Redis.from_url(clean.redis_url)
    daemons("processor", settings)
    feed = daemons("feeds", settings)
    wait_for(lambda: len(history(r, "BTCUSDT")) == 2, 20, what="first two trades")
    assert feed.terminate() == 0
    first.stop()

    # Act: the daemon comes back; the exchange sends trade 2 again, then 3 and 5
    second = FeedServer([{"frame": _bn(2, "100.01")}, {"frame": _bn(3, "100.02")}, {"frame": _bn(5, "100.04")}]).start()
    try:
        daemons("feeds", settings.model_copy(update={"feed_url_binance": f"{second.url}/stream"}))
        wait_for(lambda: len(history(r, "BTCUSDT")) == 4, 20, what="trades after the restart")

        # Assert: no duplicate, our seq continues, the gap across the restart is counted
        assert [(p, s) for p, _, s in history(r, "BTCUSDT")] == [
            ("100.00", 1),
            ("100.01", 2),
            ("100.02", 3),
            ("100.04", 4),
        ]
        doc = wait_for(
            lambda: (
                (d := json.loads((settings.run_dir / "feeds.json").read_text()))["info"]["feeds"]["binance"]["gaps"]
                and d
            ),
            10,
        )
        h = doc["info"]["feeds"]["binance"]
        assert (h["gaps"], h["missed"], h["duplicates"]) == (1, 1, 1)
    finally:
        second.stop()


def _bn(t: int, price: str) -> dict:
    return {
        "stream": "btcusdt@trade",
        "data": {"e": "trade", "E": 1717000000000 + t, "s": "BTCUSDT", "t": t, "p": price, "q": "1"}
        | {"T": 1717000000000 + t},
    }
