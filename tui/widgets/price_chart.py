"""Price chart of the selected symbol on a time axis, drawn by hand into line strips.

Ticks are a braille price line; a candle interval (``1s``, ``1m``, any in ``candle_intervals``) is
candlesticks over a volume panel. The ▲ BUY / ▼ SELL markers are the server's SMA crossover
signals (the ``signals:<SYM>`` channel and ``GET /api/v1/signals``), placed at the tick or
candle they fall in; the chart computes none.

Contract: data calls (:meth:`PriceChart.set_series`, :meth:`~PriceChart.set_candles`,
:meth:`~PriceChart.add_price`, :meth:`~PriceChart.add_signals`) only mark the chart dirty. A
timer takes a snapshot of the dirty state (:class:`Frame`) at most every ``REDRAW_S`` (ticks) or
``CANDLE_REDRAW_S`` (candles, which also reload every 2 s) and draws it on the event loop: a
drawing (:func:`draw`) takes about a millisecond, where textual-plotext took 45-80 ms in a thread
that held the GIL and so held up key presses anyway. A snapshot equal to the one drawn is not
drawn again and repaints nothing; the drawing is kept as one strip per line. Prices are exact
decimal strings everywhere but here, where they become plot coordinates (floats, display only).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from msgspec.structs import replace
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from stockctl.marketdata.candles import bucket_start, parse_interval
from stockctl.wire.marketdata import Candle, Signal

REDRAW_S = 0.1
"""Shortest gap between two drawings of the tick line (at most 10 a second; a drawing is ~1 ms)."""
CANDLE_REDRAW_S = 0.25
"""Candles redraw more rarely: a 1s candle still shows four times."""
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
    """What one drawing shows: a snapshot of the chart's data at its size."""

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


BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
"""Braille dot bits by (row 0-3, column 0-1) inside one character cell."""
EIGHTHS = " ▁▂▃▄▅▆▇█"
UP, DOWN, LINE, VOLUME, LABEL = "green", "red", "cyan", "blue", "dim"
Cells = list[list[tuple[str, str]]]


def _spread(i: int, n: int, cols: int) -> int:
    """The column of point ``i`` of ``n`` spread over ``cols`` columns (the newest at the right edge)."""
    return cols - 1 if n <= 1 else round(i * (cols - 1) / (n - 1))


def draw(frame: Frame) -> list[list[tuple[str, str]]]:
    """The chart of ``frame`` as rows of (text, style) runs, ``frame.height`` rows of ``frame.width``
    cells: price labels, candles (wick │, body ┃) or a braille line, ▲/▼ signal markers, a volume
    panel under candles and a time axis. Pure and cheap (a few ms at most): it runs on the event loop."""
    width, height, n = frame.width, frame.height, len(frame.times)
    seconds = frame.mode == "ticks" or parse_interval(frame.mode) < 60_000_000_000
    vol_rows = max(3, round(height * VOLUME_ROWS)) if frame.candles and height >= 10 else 0
    price_rows = max(1, height - 1 - vol_rows)
    marks = [y for _, y, _ in frame.markers]
    lo = min([*(frame.low or frame.close), *marks])
    hi = max([*(frame.high or frame.close), *marks])
    levels, labels = price_ticks(lo, hi, max(2, min(price_rows, (height - 2) // (4 if vol_rows else 3))))
    vmax = max(frame.volume, default=0)
    vol_label = f"{vmax:,}" if vol_rows else ""
    margin = max(len(t) for t in [*labels, vol_label])
    cols = max(1, width - margin - 1)
    grid: Cells = [[(" ", "")] * cols for _ in range(price_rows + vol_rows)]

    def row_of(price: float, rows: int = price_rows) -> int:
        return rows // 2 if hi <= lo else round((hi - price) / (hi - lo) * (rows - 1))

    if frame.candles:
        for i in range(n):
            x = _spread(i, n, cols)
            o, c = frame.open[i], frame.close[i]
            style = UP if c >= o else DOWN
            top, bottom = row_of(max(o, c)), row_of(min(o, c))
            for r in range(row_of(frame.high[i]), row_of(frame.low[i]) + 1):
                grid[r][x] = ("┃" if top <= r <= bottom else "│", style)
            if vol_rows and vmax > 0:
                eighths = round(frame.volume[i] / vmax * vol_rows * 8)
                for k in range(vol_rows):
                    part = max(0, min(8, eighths - 8 * k))
                    if part:
                        grid[price_rows + vol_rows - 1 - k][x] = (EIGHTHS[part], VOLUME)
    else:
        _braille(grid, [(_spread(i, n, cols * 2), row_of(y, price_rows * 4)) for i, y in enumerate(frame.close)])
    for i, y, side in frame.markers:
        if 0 <= i < n:
            grid[row_of(y)][_spread(i, n, cols)] = ("▲", "bold " + UP) if side == "BUY" else ("▼", "bold " + DOWN)

    label_at = {row_of(v): t for v, t in zip(levels, labels, strict=True)}
    out: list[list[tuple[str, str]]] = []
    for r, cells in enumerate(grid):
        text = label_at.get(r) if r < price_rows else (vol_label if r == price_rows else None)
        line = [(text.rjust(margin) + "┤", LABEL) if text is not None else (" " * margin + "│", LABEL)]
        out.append(line + _runs(cells))
    positions, times = time_labels(frame.times, max(2, width // 14), seconds)
    axis = [" "] * cols
    free = 0
    for pos, label in zip(positions, times, strict=True):
        x = max(0, min(cols - len(label), _spread(pos, n, cols) - len(label) // 2))
        if x >= free and x + len(label) <= cols:
            axis[x : x + len(label)] = label
            free = x + len(label) + 1
    out.append([(" " * margin + "└", LABEL), ("".join(axis), LABEL)])
    return out


def _braille(grid: Cells, dots: list[tuple[int, int]]) -> None:
    """A line through ``dots`` ((x, y) in braille dots, 2 x 4 a cell) drawn into ``grid``."""
    bits: dict[tuple[int, int], int] = {}

    def dot(x: int, y: int) -> None:
        key = (y // 4, x // 2)
        bits[key] = bits.get(key, 0) | BRAILLE_BITS[y % 4][x % 2]

    for (x0, y0), (x1, y1) in pairwise(dots):
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for k in range(steps + 1):
            dot(x0 + round((x1 - x0) * k / steps), y0 + round((y1 - y0) * k / steps))
    if len(dots) == 1:
        dot(*dots[0])
    for (r, c), b in bits.items():
        if 0 <= r < len(grid) and 0 <= c < len(grid[r]):
            grid[r][c] = (chr(0x2800 + b), LINE)


def _runs(cells: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Neighbouring cells of one style joined into one run."""
    runs: list[tuple[str, str]] = []
    chars: list[str] = []
    style = cells[0][1] if cells else ""
    for ch, st in cells:
        if st != style:
            runs.append(("".join(chars), style))
            chars, style = [], st
        chars.append(ch)
    if chars:
        runs.append(("".join(chars), style))
    return runs


class PriceChart(Widget):
    """Ticks or candles of one symbol with volume, a time axis and the server's BUY/SELL signals."""

    DEFAULT_CSS = """
    PriceChart { height: 1fr; min-height: 6; }
    """

    def __init__(self, fast: int = 20, slow: int = 50, id: str | None = None) -> None:
        super().__init__(id=id)
        self._base: tuple[tuple[str, bool], Style] | None = None
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
        self.drawing = False  # drawings are synchronous now; kept for `settled`
        self._text: Text | None = None
        self.drawn_frame: Frame | None = None
        self._rows: list[list[tuple[str, str]]] = []
        self._strips: tuple[tuple[Style, int, str | None], list[Strip]] | None = None
        """The painted lines, for (base style, width, status message or None for the drawing)."""
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
        self.set_interval(REDRAW_S / 2, self._flush)

    def on_resize(self) -> None:
        self.dirty = True
        self._flush()

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
        theme = self.app.theme
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
        if not self.dirty or time.monotonic() - self.drawn_at < gap:
            return
        self.dirty = False
        if not self.symbol or len(self.times) < 1 or self.content_size.width < 12 or self.content_size.height < 3:
            self.drawn_frame, self._rows, self._strips, self._text = None, [], None, None
            self.refresh()
            return
        frame = self.frame()
        self.drawn_at = time.monotonic()
        if frame == self.drawn_frame:
            return  # nothing shown would change: no drawing, no repaint
        self._rows = draw(frame)
        self._strips = self._text = None  # made from the rows when next painted, or read
        self.drawn_frame = frame
        self.drawings += 1
        if frame.candles and not self.loading:
            suffix = f" ({frame.per_bar} per bar)" if frame.per_bar > 1 else ""
            self.border_title = f"{self.symbol} · {self.mode} candles · last {self.shown}{suffix}"
        self.refresh()

    @property
    def drawn(self) -> Text | None:
        """The last drawing as text (None before the first)."""
        if self._text is None and self.drawn_frame is not None:
            self._text = Text("\n").join(Text.assemble(*row) for row in self._rows)
        return self._text

    @property
    def settled(self) -> bool:
        """Nothing waits to be drawn (tests and snapshots wait for this)."""
        return not self.dirty and not self.drawing

    def _status(self) -> str | None:
        """What the chart says instead of a drawing, if anything."""
        if not self.symbol:
            return "select a symbol"
        if self.loading and not self.times:
            return "loading…"
        if not self.times:
            return "waiting for prices…"
        if self.content_size.width < 12 or self.content_size.height < 3:
            return "(too small)"
        return None if self.drawn_frame is not None else "drawing…"

    def base_style(self) -> Style:
        """The widget's own rich style, worked out once per theme and focus (``rich_style`` walks
        every ancestor each time, and a frame asks for it once per line)."""
        key = (self.app.theme, self.has_focus)
        if self._base is None or self._base[0] != key:
            self._base = (key, self.rich_style)
        return self._base[1]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None

    def render_line(self, y: int) -> Strip:
        width, base = self.size.width, self.base_style()
        status = self._status()
        key = (base, width, status)
        if self._strips is None or self._strips[0] != key:
            rows = self._rows if status is None else [[(status, "dim")]]
            lines = [_strip(row, base).crop(0, width).extend_cell_length(width, base) for row in rows]
            self._strips = (key, lines)
        strips = self._strips[1]
        return strips[y] if y < len(strips) else Strip.blank(width, base)


def _strip(row: list[tuple[str, str]], base: Style) -> Strip:
    return Strip(list(Segment.apply_style([Segment(t, _style(st)) for t, st in row], base)))


_styles: dict[str, Style] = {}


def _style(name: str) -> Style:
    found = _styles.get(name)
    if found is None:
        found = _styles[name] = Style.parse(name) if name else Style()
    return found


def _ok(price: str) -> bool:
    try:
        return Decimal(price).is_finite()
    except (InvalidOperation, TypeError):
        return False
