"""Feed adapters in process: specs, normalising, gap and duplicate counting, the bench."""

from __future__ import annotations

import json

import pytest

from stockctl.bench.feeds import run_feeds_bench
from stockctl.errors import UsageError
from stockctl.feeds import FeedHealth, MalformedFrame, exact_price, exact_qty, iso_to_ns
from stockctl.feeds.binance import BinanceAdapter, ServerShutdown
from stockctl.wire.feeds import parse_feed


def test_feed_specs_parse_and_bad_ones_say_why() -> None:
    spec = parse_feed("binance:btcusdt, ETHUSDT@aggtrade")
    assert spec.symbols == ("BTCUSDT", "ETHUSDT") and spec.streams == ("trade", "aggTrade")
    assert str(parse_feed("coinbase:BTC-USD")) == "coinbase:BTC-USD"
    for bad, needle in [
        ("kraken:XBT", "binance or coinbase"),
        ("binance:", "no symbols"),
        ("binance:BTC*", "wildcard"),
        ("binance:BTCUSDT@depth", "unknown Binance stream"),
        ("coinbase:BTC-USD@trade", "no @stream"),
        ("binance:BTCUSDT,btcusdt", "twice"),
    ]:
        with pytest.raises(UsageError, match=needle):
            parse_feed(bad)


def test_prices_and_times_are_exact() -> None:
    assert exact_price("67012.34000000") == "67012.34"
    assert exact_price("0.00000001") == "0.00000001"
    assert exact_price("400.2300000000") == "400.23"  # zeros past 8 decimals are exact
    for bad in ("6.7e4", "-1", "NaN", 67012.34, "0.000000001"):
        with pytest.raises(MalformedFrame):
            exact_price(bad)
    assert [exact_qty(q) for q in ("0.00700000", "1.00000000", "0.00000001", "007", "2.5000000000")] == [
        "0.007", "1", "0.00000001", "7", "2.5",
    ]  # fmt: skip
    for bad, why in (("0.000000001", "too many decimals"), ("0.00000000", "above zero"), ("1e-3", "decimal")):
        with pytest.raises(MalformedFrame, match=why):
            exact_qty(bad)  # the history store and candles sum quantities in 1e-8 units
    assert iso_to_ns("2014-11-07T08:19:27.028459Z") == 1415348367_028459000
    with pytest.raises(MalformedFrame):
        iso_to_ns("2014-11-07 08:19:27")


def test_binance_frames_gaps_duplicates_and_shutdown() -> None:
    spec = parse_feed("binance:BTCUSDT")
    health = FeedHealth("binance", spec.symbols)
    a = BinanceAdapter(spec, "ws://x/stream", health)

    def frame(t: int) -> str:
        data = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": t, "p": "1.5", "q": "2", "T": 1700000000000 + t}
        return json.dumps({"stream": "btcusdt@trade", "data": data})

    assert [t.trade_id for t in a.parse(frame(1))] == [1]
    assert a.parse(frame(1)) == []  # a duplicate is dropped
    trades = a.parse(frame(4))
    assert trades[0].ts == (1700000000000 + 4) * 1_000_000 and trades[0].origin == "binance:trade:4"
    assert (health.gaps, health.missed, health.duplicates) == (1, 2, 1)
    with pytest.raises(MalformedFrame, match="not subscribed"):
        a.parse(json.dumps({"stream": "ethusdt@trade", "data": {}}))
    with pytest.raises(ServerShutdown):
        a.parse(json.dumps({"stream": "btcusdt@trade", "data": {"e": "serverShutdown", "E": 1}}))


def test_feeds_bench_normalises_every_frame() -> None:
    result = run_feeds_bench(2000)
    assert result.trades == 2000 and result.raw_per_s > 0 and result.adapter_per_s > 0
