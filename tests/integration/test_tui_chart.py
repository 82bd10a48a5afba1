"""The price chart: hand-drawn ticks and candles with volume and a time axis, markers from
the server's signals only, and bounded, coalesced redraws (frozen data: no network)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from textual.pilot import Pilot

from stockctl.settings import Settings
from stockctl.wire.marketdata import Candle, Signal
from tests.support.pilot import until
from tui.app import StockApp, make_app
from tui.demo import crossovers, demo_data, sma
from tui.messages import QuoteArrived, SignalsArrived
from tui.source import FrozenData
from tui.widgets.price_chart import REDRAW_S, PriceChart, merge_candles, place_markers
from tui.widgets.signals_log import clock


@pytest.fixture(autouse=True)
def _utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _app(tmp_path: Path, data: FrozenData) -> StockApp:
    return make_app(Settings(home=tmp_path / "home", sma_fast=20, sma_slow=50), data=data)


def chart(app: StockApp) -> PriceChart:
    return app.panel(PriceChart)


def drawn(app: StockApp) -> bool:
    c = chart(app)
    return bool(c.times) and c.settled and c.drawn is not None


def _candle(start: int, o: str, h: str, low: str, c: str, v: int) -> Candle:
    return Candle("X", "1s", start, o, h, low, c, v, 1)


def _signal(side: str, price: str, ts: int, seq: int = 1) -> Signal:
    return Signal("AAPL", side, price, ts, seq, price, price)  # type: ignore[arg-type]


# --- pieces ---------------------------------------------------------------------------------


def test_merge_candles_is_exact_ohlcv_and_keeps_the_newest_bar_whole() -> None:
    candles = [
        _candle(0, "10.10", "10.30", "10.00", "10.20", 5),
        _candle(1, "10.20", "10.25", "9.95", "10.00", 7),
        _candle(2, "10.00", "10.40", "10.00", "10.35", 1),
        _candle(3, "10.35", "10.50", "10.30", "10.45", 2),
        _candle(4, "10.45", "10.45", "10.10", "10.15", 3),
    ]

    same, k = merge_candles(candles, 5)
    merged, k2 = merge_candles(candles, 2)

    assert (same, k) == (candles, 1)
    assert k2 == 3
    assert [(c.start, c.open, c.high, c.low, c.close, c.volume) for c in merged] == [
        (0, "10.10", "10.30", "9.95", "10.00", 12),  # the older, partial run
        (2, "10.00", "10.50", "10.00", "10.15", 6),
    ]
    assert Decimal(merged[1].high) == Decimal("10.50")


def test_markers_sit_at_the_tick_or_candle_holding_the_signal() -> None:
    times = [100, 200, 300]
    signals = [_signal("BUY", "1.5", 250), _signal("SELL", "2.5", 50), _signal("SELL", "3.5", 300)]

    ticks = place_markers(times, signals, 0)
    candles = place_markers(times, [*signals, _signal("BUY", "9", 400)], 100)

    assert ticks == [(1, 1.5, "BUY"), (2, 3.5, "SELL")]  # before the first point: not shown
    assert candles == [(1, 1.5, "BUY"), (2, 3.5, "SELL")]  # at 400 the last bucket [300, 400) is over


def test_demo_crossovers() -> None:
    prices = [5.0] * 4 + [1.0] * 4 + [9.0] * 4 + [0.0] * 4
    assert [side for _, side in crossovers(sma(prices, 2), sma(prices, 4))] == ["BUY", "SELL"]


# --- the app --------------------------------------------------------------------------------


async def test_markers_are_the_servers_signals_not_crossovers(tmp_path: Path) -> None:
    data = demo_data()
    shown = data.history["AAPL"][-120:]
    # The prices cross their SMAs several times, but the server signalled once: one marker.
    data.signals["AAPL"] = [_signal("SELL", shown[30].price, shown[30].ts, seq=shown[30].seq)]
    app = _app(tmp_path, data)

    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: drawn(app), what="AAPL chart drawn")
        assert chart(app).markers() == [(30, float(shown[30].price), "SELL")]
        assert "▼" in chart(app).drawn.plain and "▲" not in chart(app).drawn.plain  # type: ignore[union-attr]
        # A live signal on the channel is a marker at its tick.
        app.post_message(SignalsArrived([_signal("BUY", shown[90].price, shown[90].ts, seq=shown[90].seq)]))
        await until(pilot, lambda: len(chart(app).markers()) == 2, 3, "live signal marker")
        await until(pilot, lambda: drawn(app) and "▲" in chart(app).drawn.plain, 3, "BUY drawn")  # type: ignore[union-attr]
        # The time axis labels the shown ticks' times.
        assert clock(shown[0].ts) in chart(app).drawn.plain  # type: ignore[union-attr]


async def test_candles_with_volume_time_axis_and_live_close(tmp_path: Path) -> None:
    data = demo_data()
    app = _app(tmp_path, data)

    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: drawn(app), what="ticks drawn")
        await pilot.press("i")
        await until(pilot, lambda: chart(app).mode == "1s" and chart(app).candles and drawn(app), 5, "1s candles")
        c = chart(app)
        ones = [x for x in data.candles["AAPL"] if x.interval == "1s"]
        assert c.candles == ones[-c.shown :]
        text = c.drawn.plain  # type: ignore[union-attr]
        frame = c.frame()
        assert frame.per_bar == 2  # 80 candles in a 78-column panel: two a bar, volumes summed
        assert f"{max(frame.volume):,}" in text  # the volume panel's scale
        assert clock(frame.times[0]) in text
        assert "1s candles" in str(c.border_title)
        # A live tick in the current bucket moves its close and high, exactly.
        last = c.candles[-1]
        up = str(Decimal(last.high) + Decimal("1.25"))
        quote = data.quotes[0]
        app.post_message(QuoteArrived(type(quote)("AAPL", up, last.start + 1, 10_001, up, up, up, "0", "0")))
        await until(pilot, lambda: c.candles[-1].close == up, 3, "live close")
        assert c.candles[-1].high == up and c.candles[-1].open == last.open and len(c.candles) == len(ones[-c.shown :])
        await pilot.press("i")
        await until(pilot, lambda: c.mode == "1m" and c.candles and drawn(app), 5, "1m candles")
        assert all(x.interval == "1m" for x in c.candles)
        assert clock(c.candles[0].start)[:5] in c.drawn.plain  # type: ignore[union-attr]  # HH:MM for minutes


async def test_a_burst_of_quotes_is_coalesced_into_few_drawings(tmp_path: Path) -> None:
    data = demo_data()
    app = _app(tmp_path, data)

    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: drawn(app), what="ticks drawn")
        c = chart(app)
        before, quote, last = c.drawings, data.quotes[0], data.history["AAPL"][-1]
        started = time.monotonic()
        for i in range(300):
            p = str(Decimal(last.price) + Decimal(i) / 100)
            app.post_message(QuoteArrived(type(quote)("AAPL", p, last.ts + i + 1, 20_000 + i, p, p, p, "0", "0")))
            if i % 50 == 0:
                await pilot.pause(0.05)
        await until(pilot, lambda: c.last_seq == 20_299 and drawn(app), 5, "burst drawn")
        elapsed = time.monotonic() - started
        assert c.prices[-1] == str(Decimal(last.price) + Decimal(299) / 100)
        assert 1 <= c.drawings - before <= elapsed / REDRAW_S + 2


def test_snapshot_chart_1s_candles(snapshot, tmp_path: Path) -> None:
    async def candles(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, StockApp)
        await until(pilot, lambda: drawn(app), what="ticks drawn")
        await pilot.press("i")
        await until(pilot, lambda: chart(app).mode == "1s" and chart(app).candles and drawn(app), 5, "candles")

    snapshot(_app(tmp_path, demo_data()), (160, 48), candles)


async def test_book_size_headers_are_whole(tmp_path: Path) -> None:
    from rich.console import Console

    from tui.widgets.order_book import OrderBook

    data = demo_data()
    data.books["JIO_INR"]["bids"][0][1] = "123456"  # a wide size: the bars give way, not the header
    app = _app(tmp_path, data)

    async with app.run_test(size=(160, 48)) as pilot:
        book = app.panel(OrderBook)
        await until(pilot, lambda: "JIO_INR" in book.books, what="book")
        await pilot.press("3")
        await pilot.pause()
        console = Console(width=book.content_size.width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(book.render())
        lines = console.export_text().splitlines()
        assert lines[0].split() == ["size", "bid", "ask", "size"]
        assert "123456" in lines[1] and "…" not in console.export_text()
