"""Signals log: SMA crossovers of every symbol, newest at the bottom."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from stockctl.wire.marketdata import Signal
from tui.widgets.table import Table

REDRAW_S = 0.05
KEEP = 200


def clock(ts_ns: int) -> str:
    """Local wall-clock time of a nanosecond timestamp."""
    return datetime.fromtimestamp(ts_ns / 1e9).strftime("%H:%M:%S")


class SignalsLog(Table):
    """BUY/SELL crossover signals as they arrive (deduplicated across reconnects)."""

    DEFAULT_CSS = """
    SignalsLog { height: 1fr; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.seen: set[tuple[str, int]] = set()
        self.pending: list[Signal] = []
        self.border_title = "Signals"

    def on_mount(self) -> None:
        # The clock is always HH:MM:SS: a fixed width, so the column never jumps as rows arrive.
        self.add_column("time", key="time", width=8)
        for col in ("sym", "side", "price", "fast", "slow"):
            self.add_column(col, key=col)
        self.set_interval(REDRAW_S, self._flush)

    def add_signals(self, signals: list[Signal]) -> None:
        """Queue signals; drawn at the next redraw tick."""
        self.pending.extend(signals)

    def _flush(self) -> None:
        if not self.pending:
            return
        batch = sorted(self.pending, key=lambda s: s.ts)
        self.pending = []
        added = False
        for s in batch:
            key = (s.symbol, s.seq)
            if key in self.seen:
                continue
            self.seen.add(key)
            style = "bold green" if s.side == "BUY" else "bold red"
            self.add_row(
                clock(s.ts),
                s.symbol,
                Text(s.side, style=style),
                s.price,
                s.sma_fast,
                s.sma_slow,
                key=f"{s.symbol}:{s.seq}",
            )
            added = True
        while self.row_count > KEEP:
            self.remove_row(self.ordered_rows[0].key)
        if added:
            self.sort("time")
            self.move_cursor(row=self.row_count - 1, animate=False)
