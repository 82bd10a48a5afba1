"""Price chart of the selected symbol: price line, fast and slow SMA, BUY/SELL at crossovers."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from rich.text import Text
from textual.widget import Widget

REDRAW_S = 0.05
RANGES = (60, 120, 300, 1000)
"""Points shown (ticks or candles); ``[`` and ``]`` switch."""


def sma(values: list[float], window: int) -> list[float | None]:
    """Simple moving average; None until the window is full."""
    out: list[float | None] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / window if i >= window - 1 else None)
    return out


def crossovers(fast: list[float | None], slow: list[float | None]) -> list[tuple[int, str]]:
    """Indexes where fast crosses slow: BUY when it crosses above, SELL below."""
    marks: list[tuple[int, str]] = []
    prev = 0
    for i, (f, s) in enumerate(zip(fast, slow, strict=True)):
        if f is None or s is None:
            continue
        sign = 1 if f > s else -1 if f < s else 0
        if sign and prev and sign != prev:
            marks.append((i, "BUY" if sign > 0 else "SELL"))
        if sign:
            prev = sign
    return marks


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def plot(prices: list[float], fast_window: int, slow_window: int, shown: int, width: int, height: int) -> list[Text]:
    """Lines of a character plot of the last ``shown`` prices with SMA lines and crossover marks.

    The SMAs use the points before the shown range too, so they start filled.
    """
    if width < 12 or height < 3:
        return [Text("(too small)", style="dim")]
    if len(prices) < 2:
        return [Text("waiting for prices…", style="dim")]
    fast_all = sma(prices, fast_window)
    slow_all = sma(prices, slow_window)
    marks_all = dict(crossovers(fast_all, slow_all))
    start = max(0, len(prices) - shown)
    prices, fast, slow = prices[start:], fast_all[start:], slow_all[start:]
    marks = {i - start: side for i, side in marks_all.items() if i >= start}
    label_w = max(len(_fmt(v)) for v in (max(prices), min(prices))) + 1
    cols = width - label_w
    n = len(prices)
    # Column c shows the last point of its bucket (the plot is right-aligned when short).
    if n >= cols:
        idx = [min(n - 1, int((c + 1) * n / cols) - 1) for c in range(cols)]
        offset = 0
    else:
        idx = list(range(n))
        offset = cols - n
    series = [v for v in prices + [x for x in fast + slow if x is not None]]
    lo, hi = min(series), max(series)
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    span = hi - lo

    def row_of(v: float) -> int:
        return round((hi - v) / span * (height - 1))

    grid: list[list[tuple[str, str]]] = [[(" ", "")] * cols for _ in range(height)]
    for line, ch, style in ((slow, "·", "magenta"), (fast, "·", "yellow")):
        for c, i in enumerate(idx):
            v = line[i]
            if v is not None:
                grid[row_of(v)][c + offset] = (ch, style)
    prev_row: int | None = None
    for c, i in enumerate(idx):
        r = row_of(prices[i])
        if prev_row is not None and abs(r - prev_row) > 1:
            step = 1 if r > prev_row else -1
            for rr in range(prev_row + step, r, step):
                grid[rr][c + offset] = ("│", "cyan")
        grid[r][c + offset] = ("•", "bold cyan")
        prev_row = r
    # A mark falls in the column whose bucket holds it.
    bucket_start = 0
    for c, i in enumerate(idx):
        for j in range(bucket_start, i + 1):
            side = marks.get(j)
            if side:
                r = row_of(prices[j])
                if side == "BUY":
                    grid[min(height - 1, r + 1)][c + offset] = ("▲", "bold green")
                else:
                    grid[max(0, r - 1)][c + offset] = ("▼", "bold red")
        bucket_start = i + 1
    labels = {0: _fmt(hi), height - 1: _fmt(lo), (height - 1) // 2: _fmt((hi + lo) / 2)}
    lines = []
    for r, row in enumerate(grid):
        line = Text(labels.get(r, "").rjust(label_w - 1) + "┤" if r in labels else " " * (label_w - 1) + "│", "dim")
        for ch, style in row:
            line.append(ch, style)
        lines.append(line)
    return lines


class PriceChart(Widget):
    """Price line of one symbol with SMA fast (yellow) and slow (magenta), ▲ BUY / ▼ SELL marks."""

    DEFAULT_CSS = """
    PriceChart { height: 1fr; min-height: 6; }
    """

    def __init__(self, fast: int = 20, slow: int = 50, id: str | None = None) -> None:
        super().__init__(id=id)
        self.fast, self.slow = fast, slow
        self.symbol = ""
        self.mode = "ticks"
        self.range_index = 1
        self.prices: list[float] = []
        self.last_seq = 0
        self.dirty = False
        self.loading = False
        self.border_title = "Chart"

    @property
    def shown(self) -> int:
        return RANGES[self.range_index]

    @property
    def wanted(self) -> int:
        """Points to load: the shown range plus the slow window, so the SMAs start filled."""
        return self.shown + self.slow

    def on_mount(self) -> None:
        self.set_interval(REDRAW_S, self._flush)

    def set_series(self, symbol: str, mode: str, prices: list[str]) -> None:
        """Replace the plotted points (oldest first)."""
        self.symbol, self.mode = symbol, mode
        self.prices = [float(p) for p in _clean(prices)][-self.wanted :]
        self.loading = False
        self._title()
        self.dirty = True

    def add_price(self, symbol: str, price: str, seq: int) -> None:
        """A live tick of the charted symbol (tick mode only; candles are reloaded)."""
        if symbol != self.symbol or self.mode != "ticks" or seq == self.last_seq:
            return
        self.last_seq = seq
        self.prices.extend(float(p) for p in _clean([price]))
        del self.prices[: -self.wanted]
        self.dirty = True

    def _title(self) -> None:
        mode = "ticks" if self.mode == "ticks" else f"{self.mode} candles"
        self.border_title = f"{self.symbol} · {mode} · last {self.shown}"
        self.border_subtitle = f"SMA{self.fast} yellow · SMA{self.slow} magenta · ▲ BUY ▼ SELL"

    def markers(self) -> list[tuple[int, str]]:
        """Crossovers within the shown range (index into the shown points)."""
        marks = crossovers(sma(self.prices, self.fast), sma(self.prices, self.slow))
        start = max(0, len(self.prices) - self.shown)
        return [(i - start, side) for i, side in marks if i >= start]

    def _flush(self) -> None:
        if self.dirty:
            self.dirty = False
            self.refresh()

    def render(self) -> Text:
        if not self.symbol:
            return Text("select a symbol", style="dim")
        lines = plot(self.prices, self.fast, self.slow, self.shown, self.content_size.width, self.content_size.height)
        return Text("\n").join(lines)


def _clean(prices: list[str]) -> list[Decimal]:
    out = []
    for p in prices:
        try:
            out.append(Decimal(p))
        except (InvalidOperation, TypeError):
            continue
    return out
