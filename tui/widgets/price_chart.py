"""Price chart of the selected symbol, drawn with textual-plotext on a time axis.

Ticks are a price line; a candle interval (``1s``, ``1m``, any in ``candle_intervals``) is
candlesticks over a volume panel. The ▲ BUY / ▼ SELL markers are the server's SMA crossover
signals (the ``signals:<SYM>`` channel and ``GET /api/v1/signals``), placed at the tick or
candle they fall in; the chart computes none.

Contract: data calls (:meth:`PriceChart.set_series`, :meth:`~PriceChart.set_candles`,
:meth:`~PriceChart.add_price`, :meth:`~PriceChart.add_signals`) only mark the chart dirty. A
timer takes a snapshot of the dirty state (:class:`Frame`) and draws it in a thread worker,
one drawing at a time: plotext needs tens of milliseconds for a plot, which must not hold up
the event loop (key presses). So the chart redraws at most every ``REDRAW_S`` (ticks) or
``CANDLE_REDRAW_S`` (candles, which also reload every 2 s), never more than 20 times a second,
and updates arriving meanwhile are coalesced into the next drawing. Prices are exact decimal
strings everywhere but here, where they become plot coordinates (floats, display only).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import partial

from msgspec.structs import replace
from rich.text import Text
from textual.message import Message
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from stockctl.marketdata.candles import bucket_start, parse_interval
from stockctl.wire.marketdata import Candle, Signal

REDRAW_S = 0.25
"""Shortest gap between two drawings of the tick line (at most 4 a second: a drawing costs ~30-50 ms
of a shared core, and `stockctl bench tui` showed key presses waiting behind 10 a second)."""
CANDLE_REDRAW_S = 0.5
"""Candles redraw more rarely: a drawing costs more, and a 1s candle still shows twice."""
RANGES = (60, 120, 300, 1000)
"""Points shown (ticks or candles); ``[`` and ``]`` switch."""
SIGNALS_KEPT = 200
"""Signals remembered per symbol (the REST load asks for this many)."""
VOLUME_ROWS = 0.3
"""Share of the chart's height the volume panel takes (candles only)."""
MIN_BAR_COLS = 1
"""Columns one candle needs at least; more candles than fit are merged (exact OHLCV)."""
LABEL_COLS = 10
"""Columns the price labels and frame take, roughly, when working out how many candles fit."""


@dataclass(frozen=True)
class Frame:
    """What one drawing shows: a snapshot taken on the event loop, drawn in a thread."""

    mode: str
    times: tuple[int, ...]
    """Tick times, or candle starts (ns)."""
    close: tuple[float, ...]
    open: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    low: tuple[float, ...] = ()
    volume: tuple[int, ...] = ()
    markers: tuple[tuple[int, float, str], ...] = ()
    """(index into ``times``, price, side) of each server signal in the shown range."""
    width: int = 80
    height: int = 20
    theme: str = "textual-dark"
    per_bar: int = 1

    @property
    def candles(self) -> bool:
        return self.mode != "ticks"


def merge_candles(candles: list[Candle], max_bars: int) -> tuple[list[Candle], int]:
    """At most ``max_bars`` candles: runs of k consecutive ones merged into one (first open,
    highest high, lowest low, last close, summed volume), and k. Exact: prices stay decimal strings."""
    if max_bars < 1 or len(candles) <= max_bars:
        return candles, 1
    k = -(-len(candles) // max_bars)
    # Runs are counted from the newest candle, so the last bar is always a full, current one.
    first = len(candles) % k
    runs = ([candles[:first]] if first else []) + [candles[i : i + k] for i in range(first, len(candles), k)]
    merged = [
        Candle(
            symbol=run[0].symbol,
            interval=run[0].interval,
            start=run[0].start,
            open=run[0].open,
            high=str(max(Decimal(c.high) for c in run)),
            low=str(min(Decimal(c.low) for c in run)),
            close=run[-1].close,
            volume=sum(c.volume for c in run),
            count=sum(c.count for c in run),
        )
        for run in runs
    ]
    return merged, k


def place_markers(times: list[int], signals: list[Signal], span_ns: int) -> list[tuple[int, float, str]]:
    """Each signal at the point it falls in: the last tick at or before it, or the candle whose
    bucket ``[start, start + span_ns)`` holds it. Signals outside the shown range are left out."""
    if not times:
        return []
    out = []
    for s in sorted(signals, key=lambda s: (s.ts, s.seq)):
        i = bisect_right(times, s.ts) - 1
        end = times[i] + span_ns if span_ns else times[-1] + 1  # a tick's signal has the tick's time
        if i >= 0 and s.ts < end:
            out.append((i, float(s.price), s.side))
    return out


def time_labels(times: tuple[int, ...], count: int, seconds: bool) -> tuple[list[int], list[str]]:
    """``count`` evenly spread positions along ``times`` and their local clock labels."""
    n = len(times)
    if n == 0 or count < 1:
        return [], []
    count = min(count, n)
    positions = sorted({round(i * (n - 1) / max(1, count - 1)) for i in range(count)})
    form = "%H:%M:%S" if seconds else "%H:%M"
    return positions, [datetime.fromtimestamp(times[i] / 1e9).strftime(form) for i in positions]


def price_ticks(low: float, high: float, count: int) -> tuple[list[float], list[str]]:
    """``count`` evenly spaced price levels from ``low`` to ``high`` and their labels (cents, or
    whole units with thousands separators from 1,000 up)."""
    if high <= low:
        return [low], [_price_label(low)]
    step = (high - low) / (count - 1)
    levels = [low + i * step for i in range(count)]
    return levels, [_price_label(v) for v in levels]


def _price_label(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.2f}"


def draw(plot: Plot, frame: Frame) -> Text:
    """The plotext drawing of ``frame`` (runs in a thread: it touches nothing but ``plot``)."""
    plot.clear_figure()
    plot.clear_data()
    width, height = frame.width, frame.height
    plot.plotsize(width, height)
    plot.theme(frame.theme)
    xs = list(range(len(frame.times)))
    seconds = frame.mode == "ticks" or parse_interval(frame.mode) < 60_000_000_000
    ticks_wanted = max(2, width // 14)
    if frame.candles and height >= 10:
        vol_rows = max(4, round(height * VOLUME_ROWS))
        plot.subplots(2, 1)
        top, bottom = plot.subplot(1, 1), plot.subplot(2, 1)
        top.plotsize(width, height - vol_rows)
        bottom.plotsize(width, vol_rows)
    else:
        top, bottom = plot, None
    if frame.candles:
        data = {"Open": list(frame.open), "Close": list(frame.close), "High": list(frame.high), "Low": list(frame.low)}
        top.candlestick(xs, data)
    else:
        top.plot(xs, list(frame.close), marker="braille", color="cyan")
    for side, marker, color in (("BUY", "▲", "green+"), ("SELL", "▼", "red+")):
        at = [(i, y) for i, y, s in frame.markers if s == side]
        if at:
            top.scatter([i for i, _ in at], [y for _, y in at], marker=marker, color=color)
    positions, labels = time_labels(frame.times, ticks_wanted, seconds)
    # Our own y labels, so the price and volume panels share one left margin (aligned x axes).
    lows = (frame.low or frame.close) + tuple(y for _, y, _ in frame.markers)
    highs = (frame.high or frame.close) + tuple(y for _, y, _ in frame.markers)
    prices, price_labels = price_ticks(min(lows), max(highs), max(2, (height - 2) // (4 if bottom else 3)))
    top_margin = max(len(t) for t in price_labels)
    if bottom is not None:
        vmax = max(frame.volume, default=0)
        vol_label = f"{vmax:,}"
        margin = max(top_margin, len(vol_label))
        top.yticks(prices, [t.rjust(margin) for t in price_labels])
        top.xticks([])
        bottom.bar(xs, list(frame.volume), width=0.6, color="blue+")
        bottom.yticks([vmax], [vol_label.rjust(margin)])
        bottom.xticks(positions, labels)
    else:
        top.yticks(prices, price_labels)
        top.xticks(positions, labels)
    return Text.from_ansi(plot.build())


class PriceChart(PlotextPlot):
    """Ticks or candles of one symbol with volume, a time axis and the server's BUY/SELL signals."""

    DEFAULT_CSS = """
    PriceChart { height: 1fr; min-height: 6; }
    """

    def __init__(self, fast: int = 20, slow: int = 50, id: str | None = None) -> None:
        super().__init__(id=id)
        self.fast, self.slow = fast, slow  # shown in the subtitle: the server's SMA windows
        self.symbol = ""
        self.mode = "ticks"
        self.range_index = 1
        self.prices: list[str] = []
        self.times: list[int] = []
        self.candles: list[Candle] = []
        self.signals: dict[str, dict[int, Signal]] = {}
        self.last_seq = 0
        self.dirty = False
        self.loading = False
        self.drawing = False
        self.drawn: Text | None = None
        self.drawn_at = 0.0
        self.drawings = 0
        self.border_title = "Chart"

    @property
    def shown(self) -> int:
        return RANGES[self.range_index]

    @property
    def wanted(self) -> int:
        """Points to load: the shown range."""
        return self.shown

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(REDRAW_S / 2, self._flush)

    def on_resize(self) -> None:
        self.dirty = True

    def _register_theme(self, app_theme_name: str) -> None:
        super()._register_theme(app_theme_name)
        self.dirty = True  # the drawn text carries the old theme's colours

    # --- data -------------------------------------------------------------------------------

    def clear(self, symbol: str) -> None:
        """Forget the shown points: ``symbol`` is loading."""
        self.symbol = symbol
        self.prices, self.times, self.candles = [], [], []
        self.loading = True
        self.border_title = f"{symbol} · loading…"
        self.dirty = True

    def set_series(self, symbol: str, mode: str, points: list[tuple[int, str]]) -> None:
        """Replace the plotted ticks: (ts ns, price) oldest first."""
        clean = [(ts, p) for ts, p in points if _ok(p)][-self.wanted :]
        self.symbol, self.mode = symbol, mode
        self.times, self.prices = [ts for ts, _ in clean], [p for _, p in clean]
        self.candles = []
        self._loaded()

    def set_candles(self, symbol: str, mode: str, candles: list[Candle]) -> None:
        """Replace the plotted candles (oldest first)."""
        self.symbol, self.mode = symbol, mode
        self.candles = [c for c in candles if all(_ok(v) for v in (c.open, c.high, c.low, c.close))][-self.wanted :]
        self.times, self.prices = [c.start for c in self.candles], [c.close for c in self.candles]
        self._loaded()

    def _loaded(self) -> None:
        self.loading = False
        self._title()
        self.dirty = True

    def add_signals(self, signals: list[Signal]) -> None:
        """Server signals (any symbol): markers of the charted symbol redraw."""
        for s in signals:
            kept = self.signals.setdefault(s.symbol, {})
            kept[s.seq] = s
            if len(kept) > SIGNALS_KEPT:
                for seq in sorted(kept)[: len(kept) - SIGNALS_KEPT]:
                    del kept[seq]
            if s.symbol == self.symbol:
                self.dirty = True

    def add_price(self, symbol: str, price: str, seq: int, ts: int) -> None:
        """A live tick of the charted symbol: a new point, or the current candle's close (a new
        bucket starts a candle; its volume comes with the next reload)."""
        if symbol != self.symbol or seq == self.last_seq or self.loading or not _ok(price):
            return
        self.last_seq = seq
        if self.mode == "ticks":
            self.times.append(ts)
            self.prices.append(price)
            del self.times[: -self.wanted], self.prices[: -self.wanted]
        elif self.candles:
            last = self.candles[-1]
            start = bucket_start(ts, parse_interval(self.mode))
            p = Decimal(price)
            if start == last.start:
                high, low = max(Decimal(last.high), p), min(Decimal(last.low), p)
                self.candles[-1] = replace(last, high=str(high), low=str(low), close=price)
            elif start > last.start:
                self.candles.append(Candle(symbol, self.mode, start, price, price, price, price, 0, 0))
                del self.candles[: -self.wanted]
            else:
                return
            self.times, self.prices = [c.start for c in self.candles], [c.close for c in self.candles]
        else:
            return
        self.dirty = True

    def markers(self) -> list[tuple[int, float, str]]:
        """The server's signals placed on the shown points: (index, price, side)."""
        span = 0 if self.mode == "ticks" else parse_interval(self.mode)
        return place_markers(self.times, list(self.signals.get(self.symbol, {}).values()), span)

    def _title(self) -> None:
        mode = "ticks" if self.mode == "ticks" else f"{self.mode} candles"
        self.border_title = f"{self.symbol} · {mode} · last {self.shown}"
        volume = " · volume below" if self.mode != "ticks" else ""
        self.border_subtitle = f"▲ BUY ▼ SELL: server SMA{self.fast}/{self.slow} signals{volume}"

    # --- drawing ----------------------------------------------------------------------------

    def frame(self) -> Frame:
        """A snapshot of what to draw now, at the widget's size and theme."""
        width, height = self.content_size.width, self.content_size.height
        theme = self._get_plotext_theme_name(self.app.theme)
        if self.mode == "ticks":
            return Frame(
                "ticks",
                tuple(self.times),
                tuple(float(p) for p in self.prices),
                markers=tuple(self.markers()),
                width=width,
                height=height,
                theme=theme,
            )
        candles, per_bar = merge_candles(self.candles, max(1, (width - LABEL_COLS) // MIN_BAR_COLS))
        span = parse_interval(self.mode) * per_bar
        starts = [c.start for c in candles]
        marks = place_markers(starts, list(self.signals.get(self.symbol, {}).values()), span)
        return Frame(
            self.mode,
            tuple(starts),
            tuple(float(c.close) for c in candles),
            open=tuple(float(c.open) for c in candles),
            high=tuple(float(c.high) for c in candles),
            low=tuple(float(c.low) for c in candles),
            volume=tuple(c.volume for c in candles),
            markers=tuple(marks),
            width=width,
            height=height,
            theme=theme,
            per_bar=per_bar,
        )

    def _flush(self) -> None:
        gap = REDRAW_S if self.mode == "ticks" else CANDLE_REDRAW_S
        if not self.dirty or self.drawing or time.monotonic() - self.drawn_at < gap:
            return
        self.dirty = False
        if not self.symbol or len(self.times) < 1 or self.content_size.width < 12 or self.content_size.height < 3:
            self.drawn = None
            self.refresh()
            return
        frame = self.frame()
        self.drawing = True
        self.drawn_at = time.monotonic()
        # On the app, so a failure reaches its one worker handler (a bug there stops the app).
        self.app.run_worker(
            partial(self._draw, frame),
            group="chart-draw",
            description="PriceChart.draw",
            thread=True,
            exit_on_error=False,
        )

    def _draw(self, frame: Frame) -> None:
        # A thread: post_message is the thread-safe way back to the event loop.
        self.post_message(self.Drawn(draw(self._plot, frame), frame))

    class Drawn(Message):
        """A finished drawing, from the drawing thread."""

        def __init__(self, text: Text, frame: Frame) -> None:
            super().__init__()
            self.text, self.frame = text, frame

    def on_price_chart_drawn(self, message: Drawn) -> None:
        self.drawing = False
        self.drawn = message.text
        self.drawings += 1
        frame = message.frame
        if frame.candles and not self.loading:
            suffix = f" ({frame.per_bar} per bar)" if frame.per_bar > 1 else ""
            self.border_title = f"{self.symbol} · {self.mode} candles · last {self.shown}{suffix}"
        self.refresh()

    @property
    def settled(self) -> bool:
        """Nothing waits to be drawn (tests and snapshots wait for this)."""
        return not self.dirty and not self.drawing

    def render(self) -> Text:
        if not self.symbol:
            return Text("select a symbol", style="dim")
        if self.loading and not self.times:
            return Text("loading…", style="dim")
        if not self.times:
            return Text("waiting for prices…", style="dim")
        if self.content_size.width < 12 or self.content_size.height < 3:
            return Text("(too small)", style="dim")
        return self.drawn if self.drawn is not None else Text("drawing…", style="dim")


def _ok(price: str) -> bool:
    try:
        return Decimal(price).is_finite()
    except (InvalidOperation, TypeError):
        return False
