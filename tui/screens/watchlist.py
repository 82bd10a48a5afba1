"""Add a symbol to, or remove one from, a watchlist: a small modal with the list's name and the symbol.

It checks the name and the symbol as you type (the symbol with
:func:`stockctl.wire.symbols.parse_symbol`, the rules every part uses), writes the watchlists
file on enter (:func:`tui.watchlists.edit_watchlist`; a file it cannot edit is an error in the
form, which stays open) and is dismissed with an :class:`Edited`, or None when cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from stockctl.errors import UsageError
from stockctl.wire.symbols import parse_symbol
from tui.watchlists import WatchlistError, Watchlists, check_name, edit_watchlist


@dataclass(frozen=True)
class Edited:
    """What the form saved: the list, the symbol, whether the file changed, the lists as now saved."""

    name: str
    symbol: str
    add: bool
    changed: bool
    lists: Watchlists

    def describe(self) -> str:
        if self.add:
            return f"{self.symbol} added to {self.name}" if self.changed else f"{self.symbol} is already in {self.name}"
        return f"{self.symbol} removed from {self.name}" if self.changed else f"{self.symbol} is not in {self.name}"


def watch_request(name: str, symbol: str) -> tuple[tuple[str, str] | None, str]:
    """``(name, SYMBOL)`` and "" when both are good, else None and what is wrong with them."""
    try:
        return (check_name(name), parse_symbol(symbol)), ""
    except (WatchlistError, UsageError) as exc:
        return None, str(exc)


class WatchlistScreen(ModalScreen[Edited | None]):
    """Add ``symbol`` to (or remove it from) the watchlist ``name``; both can be changed in the form."""

    AUTO_FOCUS = "#watch-symbol"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    WatchlistScreen { align: center middle; }
    WatchlistScreen #watch-box { width: 56; max-width: 100%; height: auto; border: round $accent; padding: 1 2;
                                 background: $surface; }
    WatchlistScreen Input { margin-bottom: 1; }
    WatchlistScreen #watch-status { height: auto; }
    WatchlistScreen #watch-status.error { color: $error; }
    """

    def __init__(self, add: bool, name: str, symbol: str, base: Path | None = None) -> None:
        super().__init__()
        self.add, self.list_name, self.symbol, self.base = add, name, symbol, base

    def compose(self) -> ComposeResult:
        verb = "Add to" if self.add else "Remove from"
        with Vertical(id="watch-box"):
            yield Static(f"[b]{verb} a watchlist[/b] · enter to save, escape to cancel", id="watch-title")
            yield Input(self.list_name, placeholder="watchlist name, e.g. tech", id="watch-name")
            yield Input(self.symbol, placeholder="symbol, e.g. AAPL or JIO_INR", id="watch-symbol")
            yield Label("", id="watch-status")

    def on_mount(self) -> None:
        self._check(quiet=True)

    def _check(self, quiet: bool = False) -> tuple[str, str] | None:
        name = self.query_one("#watch-name", Input).value
        symbol = self.query_one("#watch-symbol", Input).value
        request, problem = watch_request(name, symbol)
        status = self.query_one("#watch-status", Label)
        verb = "add" if self.add else "remove"
        status.update(problem if request is None else f"{verb} {request[1]} {'to' if self.add else 'from'} {name}")
        status.set_class(request is None and not quiet, "error")
        return request

    def on_input_changed(self, _: Input.Changed) -> None:
        self._check()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        request = self._check()
        if request is None:
            return
        try:
            lists, changed = edit_watchlist(*request, add=self.add, base=self.base)
        except (WatchlistError, UsageError) as exc:
            status = self.query_one("#watch-status", Label)
            status.update(str(exc))
            status.add_class("error")
            return
        self.dismiss(Edited(request[0], request[1], self.add, changed, lists))

    def action_cancel(self) -> None:
        """Close without changing the watchlist."""
        self.dismiss(None)
