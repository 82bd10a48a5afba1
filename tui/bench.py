"""``stockctl bench tui``: the trading terminal under a fast feed, headless, measured.

The real app (:class:`tui.app.StockApp`) runs under Textual's headless driver
(``App.run_test``) with a synthetic source instead of the gateway. The source hands the
app the same WebSocket frames the gateway sends (``quotes:<SYM>`` JSON), through the same
router and the same ``QuoteArrived`` messages, at ``rate`` quotes a second spread over
``symbols`` symbols, for ``seconds``. No server is started and no network is used.

Measured over that window:

* **input lag**: a key press (``s``, which re-sorts the board and changes its subtitle)
  is posted to the app at random intervals (``PROBE_EVERY_S``), the way the terminal driver posts keys; the lag
  is the time from posting the key to the end of the first frame that shows the new subtitle;
* **frames per second**: screen updates the compositor produced (each is also encoded to
  terminal output, as a real terminal would get, but not written anywhere);
* **redraws per second per widget**: frames that repainted the widget because it asked
  for it (``refresh``), however many cells changed in between;
* **quotes**: quotes offered by the source vs quotes the app applied, and how many batches
  they came in (the app applies what the feed brought every 50 ms, not one message per quote).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from stockctl.bench import kit as benchkit
from stockctl.errors import UsageError

DEFAULT_RATE = 1_000
DEFAULT_SECONDS = 30.0
QUICK_SECONDS = 3.0
DEFAULT_SYMBOLS = 10
TARGET_REDRAWS_PER_S = 20
TARGET_LAG_P99_MS = 50.0
PROBE_EVERY_S = (0.1, 0.2)
SIZE = (160, 48)
WATCHED = {"board": "#board", "chart": "#chart", "signals": "#signals"}


@dataclass
class TuiBenchOptions:
    """What ``bench tui`` runs: the quote rate, for how long, over how many symbols."""

    rate: float = DEFAULT_RATE
    seconds: float = DEFAULT_SECONDS
    symbols: int = DEFAULT_SYMBOLS
    seed: int = 1

    def check(self) -> None:
        if not 1 <= self.rate <= 1_000_000:
            raise UsageError(f"bad --rate {self.rate:g}: between 1 and 1,000,000 quotes/s")
        if not 0.5 <= self.seconds <= 3600:
            raise UsageError(f"bad --seconds {self.seconds:g}: between 0.5 and 3600")
        if not 1 <= self.symbols <= 500:
            raise UsageError(f"bad --symbols {self.symbols}: between 1 and 500")


@dataclass
class TuiBenchResult:
    """What ``bench tui`` measured: frames, redraws, input lag, messages handled."""

    rate: float
    seconds: float
    symbols: int
    quotes_offered: int
    offered_per_s: float
    quotes_handled: int
    handled_per_s: float
    batches_per_s: float
    fps: float
    redraws_per_s: dict[str, float]
    input_lag_p50_ms: float | None
    input_lag_p99_ms: float | None
    input_lag_max_ms: float | None
    lag_samples: int
    lag_missed: int
    cpu_percent: float
    size: list[int]
    textual: str
    elapsed_s: float
    targets: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of unsorted values, ``pct`` in 0..100 (None for no values)."""
    return benchkit.percentile(sorted(values), pct / 100) if values else None


# --- the synthetic source ---------------------------------------------------------------------


def _symbols(n: int) -> list[str]:
    base = ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "NFLX", "INTC", "AMD"]
    return base[:n] if n <= len(base) else base + [f"SYM{i:03d}" for i in range(n - len(base))]


class SyntheticSource:
    """Quotes for ``symbols`` at ``rate``/s, delivered as gateway frames; REST from a small frozen set."""

    live = True

    def __init__(self, opts: TuiBenchOptions) -> None:
        from stockctl.wire.marketdata import PricePoint, Quote
        from tui.source import FrozenData

        self.opts = opts
        self.names = _symbols(opts.symbols)
        self.rng = random.Random(opts.seed)
        self.prices = {s: 100.0 + 10 * i for i, s in enumerate(self.names)}
        self.seq = dict.fromkeys(self.names, 0)
        now = time.time_ns()
        quotes = [
            Quote(s, f"{p:.2f}", now, 0, f"{p:.2f}", f"{p:.2f}", f"{p:.2f}", "0", "0") for s, p in self.prices.items()
        ]
        history = {
            s: [PricePoint(f"{p:.2f}", now - (20 - i) * 10**9, i) for i in range(20)] for s, p in self.prices.items()
        }
        self.data = FrozenData(now_ns=now, quotes=quotes, history=history)
        self.enc = msgspec.json.Encoder()
        self.sent = 0
        self.started = 0.0
        self.stop = asyncio.Event()
        self.open_prices = dict(self.prices)

    def check_login(self) -> None:
        return None

    def api(self) -> Any:
        from tui.source import FrozenApi

        return FrozenApi(self.data)

    def now_ns(self) -> int:
        return time.time_ns()

    def _frame(self, i: int) -> tuple[str, bytes]:
        from stockctl.wire.marketdata import Quote

        sym = self.names[i % len(self.names)]
        p = self.prices[sym] * (1 + self.rng.gauss(0, 0.0005))
        self.prices[sym] = p
        self.seq[sym] += 1
        o = self.open_prices[sym]
        q = Quote(
            sym,
            f"{p:.2f}",
            time.time_ns(),
            self.seq[sym],
            f"{o:.2f}",
            f"{max(o, p):.2f}",
            f"{min(o, p):.2f}",
            f"{p - o:.2f}",
            f"{(p - o) / o * 100:.2f}",
        )
        return f"quotes:{sym}", self.enc.encode(q)

    async def feed(self, groups: list[list[str]], on_frame: Any, on_state: Any, on_error: Any) -> None:
        """Frames at the offered rate (a backlog is delivered at once, as a socket would) until stopped."""
        on_state("live", "bench@local")
        self.started = time.perf_counter()
        self.sent = 0
        rate = self.opts.rate
        while not self.stop.is_set():
            owed = int((time.perf_counter() - self.started) * rate) - self.sent
            for _ in range(owed):
                channel, data = self._frame(self.sent)
                on_frame("quote", channel, data)
                self.sent += 1
            await asyncio.sleep(0.002)


# --- the instrumented app ---------------------------------------------------------------------


def _bench_app_class() -> type:
    from tui.app import StockApp

    class BenchApp(StockApp):
        """The app, counting applied quotes, their batches, and frames."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.handled = 0
            self.batches = 0
            self.frames = 0
            self.painted: dict[str, int] = dict.fromkeys(WATCHED, 0)
            self.painting: set[str] = set()
            self.on_frame: Any = None

            take = self.router.take_quotes

            def counted_take() -> list[Any]:
                quotes = take()
                self.handled += len(quotes)
                self.batches += 1
                return quotes

            self.router.take_quotes = counted_take  # type: ignore[method-assign]

        def _display(self, screen: Any, renderable: Any) -> None:
            super()._display(screen, renderable)
            if renderable is None or self._batch_count:
                return
            if self.is_headless and hasattr(renderable, "render_segments"):
                renderable.render_segments(self.console)  # what a terminal would be sent
            self.frames += 1
            for name in self.painting:
                self.painted[name] += 1
            self.painting.clear()
            if self.on_frame is not None:
                self.on_frame()

        def watch_paints(self) -> None:
            """Note each watched widget that asks for a repaint; the next frame counts as one redraw of it."""
            for name, selector in WATCHED.items():
                widget = self.main_screen.query_one(selector)
                original = widget.refresh

                def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
                    self.painting.add(_name)
                    return _original(*args, **kwargs)

                widget.refresh = counted  # type: ignore[method-assign]

    return BenchApp


async def _run(opts: TuiBenchOptions, progress: Any) -> TuiBenchResult:
    import textual

    from stockctl.settings import Settings
    from tui.widgets.ticker_board import TickerBoard

    source = SyntheticSource(opts)
    app = _bench_app_class()(Settings(), source=source)
    lags: list[float] = []
    missed = 0
    t_start = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        board: Any = None
        deadline = time.perf_counter() + 20
        while time.perf_counter() < deadline:
            try:
                board = app.panel(TickerBoard)
            except Exception:
                board = None
            if board is not None and app.connection == "live" and len(board.visible_symbols()) == opts.symbols:
                break
            await pilot.pause(0.05)
        else:
            raise RuntimeError("the app did not start within 20 s")
        app.watch_paints()
        await pilot.pause(0.5)  # warm up at the offered rate

        probe: dict[str, Any] = {}
        shown = asyncio.Event()

        def check_probe() -> None:
            if probe and board.border_subtitle != probe["before"]:
                lags.append((time.perf_counter() - probe["t0"]) * 1000)
                probe.clear()
                shown.set()

        app.on_frame = check_probe
        frames0, handled0, sent0, batches0 = app.frames, app.handled, source.sent, app.batches
        painted0 = dict(app.painted)
        cpu0, t0 = time.process_time(), time.perf_counter()
        end = t0 + opts.seconds
        rng = random.Random(opts.seed)
        next_report = t0 + 1
        presses: list[asyncio.Task[None]] = []
        while time.perf_counter() < end:
            await asyncio.sleep(rng.uniform(*PROBE_EVERY_S))
            if time.perf_counter() >= end:
                break
            shown.clear()
            probe.update(before=board.border_subtitle, t0=time.perf_counter())
            # pilot.press also waits for the app to go idle, which under this load may take a while:
            # it runs beside the measurement (the key is posted at once) and is collected at the end.
            presses.append(asyncio.create_task(pilot.press("s")))
            try:
                await asyncio.wait_for(shown.wait(), timeout=2.0)
            except TimeoutError:
                missed += 1
                probe.clear()
            if progress and time.perf_counter() >= next_report:
                next_report += 1
                progress(f"{time.perf_counter() - t0:.0f}/{opts.seconds:g}s, {len(lags)} key presses")
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        frames, handled, sent = app.frames - frames0, app.handled - handled0, source.sent - sent0
        batches = app.batches - batches0
        painted = {k: (app.painted[k] - painted0[k]) / elapsed for k in WATCHED}
        source.stop.set()
        app.on_frame = None
        await asyncio.gather(*presses)
    p99 = percentile(lags, 99)
    result = TuiBenchResult(
        rate=opts.rate,
        seconds=opts.seconds,
        symbols=opts.symbols,
        quotes_offered=sent,
        offered_per_s=sent / elapsed,
        quotes_handled=handled,
        handled_per_s=handled / elapsed,
        batches_per_s=batches / elapsed,
        fps=frames / elapsed,
        redraws_per_s=painted,
        input_lag_p50_ms=percentile(lags, 50),
        input_lag_p99_ms=p99,
        input_lag_max_ms=max(lags) if lags else None,
        lag_samples=len(lags),
        lag_missed=missed,
        cpu_percent=100 * cpu / elapsed,
        size=list(SIZE),
        textual=getattr(textual, "__version__", "?"),
        elapsed_s=time.perf_counter() - t_start,
    )
    result.targets = {
        "kept_up": sent >= 0.95 * opts.rate * elapsed,
        "redraws_max_per_s": TARGET_REDRAWS_PER_S,  # each widget, counting its ages and the probe key's redraws
        "redraws_met": all(v <= TARGET_REDRAWS_PER_S for v in painted.values()),
        "lag_p99_target_ms": TARGET_LAG_P99_MS,
        "lag_met": p99 is not None and p99 < TARGET_LAG_P99_MS and missed == 0,
    }
    return result


def run_tui_bench(opts: TuiBenchOptions, progress: Any = None) -> TuiBenchResult:
    """Run the app headless under the synthetic feed; returns what was measured."""
    opts.check()
    return asyncio.run(_run(opts, progress))


def render(r: TuiBenchResult, console: Any) -> None:
    """A rich table of what was measured, and a verdict."""
    ok = benchkit.pass_fail

    def ms(v: float | None) -> str:
        return benchkit.fmt_num(v, ".1f")

    table = benchkit.measure_table(
        f"bench tui: {r.rate:,.0f} quotes/s over {r.symbols} symbols for {r.seconds:g}s,"
        f" headless {r.size[0]}x{r.size[1]}, Textual {r.textual}"
    )
    table.add_row("quotes offered/s", f"{r.offered_per_s:,.0f}", f"{r.quotes_offered:,} gateway frames")
    table.add_row(
        "quotes applied/s",
        f"{r.handled_per_s:,.0f}",
        f"in {r.batches_per_s:.1f} batches/s (every 50 ms at most)",
    )
    table.add_row("frames/s", f"[bold]{r.fps:.1f}[/]", "screen updates rendered (and encoded for a terminal)")
    for name, value in r.redraws_per_s.items():
        table.add_row(f"redraws/s: {name}", f"{value:.1f}", "")
    table.add_row("input lag p50", f"[bold]{ms(r.input_lag_p50_ms)} ms[/]", "key posted -> frame showing its effect")
    table.add_row(
        "input lag p99", f"{ms(r.input_lag_p99_ms)} ms", f"{r.lag_samples} key presses, {r.lag_missed} unseen"
    )
    table.add_row("input lag max", f"{ms(r.input_lag_max_ms)} ms", "")
    table.add_row("CPU", f"{r.cpu_percent:.0f} %", "of one core, this process (app + synthetic feed)")
    console.print(table)
    t = r.targets
    console.print(
        f"verdict: fed {r.rate:,.0f}/s {ok(t['kept_up'])};"
        f" each widget <= {t['redraws_max_per_s']} redraws/s {ok(t['redraws_met'])}"
        f" (most {max(r.redraws_per_s.values(), default=0):.1f});"
        f" input lag p99 < {t['lag_p99_target_ms']:g} ms {ok(t['lag_met'])} ({ms(r.input_lag_p99_ms)} ms)"
        f" [dim]in {r.elapsed_s:.0f}s[/]"
    )
