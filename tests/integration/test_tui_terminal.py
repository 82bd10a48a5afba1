"""``stockctl tui`` in a real terminal: tmux sends keys and reads the screen, as a person would.

A real stack (processor, publisher, auth, gateway), a login stored by ``stockctl login``,
then ``stockctl tui`` in a detached 100x30 tmux session on a private tmux server.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.support.cli import LoggedIn, logged_in_stack
from tests.support.terminal import Tmux, aapl_price, wait_screen

pytestmark = pytest.mark.integration

EMAIL = "tmux@example.com"


@pytest.fixture
def logged_in(clean, tmp_path: Path, daemons) -> LoggedIn:
    """A running stack and a user logged in exactly as ``stockctl login`` leaves it."""
    return logged_in_stack(clean, tmp_path, daemons, EMAIL, seed=7)


def test_tui_in_tmux_live_board_keys_palette_and_quit(logged_in: LoggedIn, tmp_path: Path) -> None:
    term = Tmux(tmp_path, logged_in.env)
    try:
        term.start(f"{shlex.quote(sys.executable)} -m stockctl tui", 100, 30)

        # The board: both symbols with a price, live, as the stored login's user.
        screen = wait_screen(term, lambda s: aapl_price(s) and "MSFT" in s and "live" in s, "live board with AAPL")
        assert "Tickers" in screen
        assert EMAIL in screen, screen
        first = aapl_price(screen)
        # Live: the price on screen moves without a key pressed.
        wait_screen(term, lambda s: aapl_price(s) not in (None, first), "AAPL price to change on screen")

        # 100 columns is the narrow layout: the board and the chart of the first symbol.
        screen = wait_screen(term, lambda s: "AAPL · ticks" in s, "AAPL chart")
        assert "MSFT · ticks" not in screen
        # Down arrow on the board selects MSFT: the chart follows.
        term.keys("Down")
        screen = wait_screen(term, lambda s: "MSFT · ticks" in s, "MSFT chart after Down")
        assert "AAPL · ticks" not in screen

        # `2` swaps the chart for the signals log; `v` goes on to the next panel (the book).
        term.keys("2")
        screen = wait_screen(term, lambda s: "Signals" in s and "MSFT · ticks" not in s, "signals panel")
        assert "side" in screen and "price" in screen
        term.keys("v")
        wait_screen(term, lambda s: "Book  Order  Orders" in s and "Signals" not in s, "book tabs after v")

        # The command palette lists the app's commands; typing narrows it; Escape closes it.
        term.keys("C-p")
        wait_screen(term, lambda s: "Search for commands" in s, "command palette")
        term.type("Theme")
        screen = wait_screen(term, lambda s: "Change the current theme" in s, "Theme command")
        term.keys("Escape")
        # (wait until it is gone: an Escape and a key sent together read as Alt+key)
        wait_screen(term, lambda s: "🔎" not in s and "Change the current" not in s and "Tickers" in s, "palette gone")

        # `/` opens the filter box (type once you see it, as a person does: keys sent in the same
        # instant as the `/` still reach the board); the board narrows as you type; Escape clears it.
        term.keys("/")
        wait_screen(term, lambda s: "filter symbols" in s, "filter box")
        term.type("ms")
        screen = wait_screen(term, lambda s: "filter: ms" in s and aapl_price(s) is None, "board filtered to MSFT")
        assert re.search(r"MSFT\s+\d+\.\d+", screen), screen
        term.keys("Escape")
        wait_screen(term, lambda s: "filter:" not in s and aapl_price(s), "filter cleared")

        # `q` quits: the terminal is handed back, the app exits with 0 and leaves no traceback.
        term.keys("q")
        screen = wait_screen(term, lambda s: "TUI EXITED" in s, "the app to exit", timeout=15)
        assert "TUI EXITED rc=0" in screen, screen
        assert "Traceback" not in screen and "Tickers" not in screen, screen
        assert term.alive()  # the pane is the shell's now (it sleeps)
    finally:
        term.kill()
    assert not term.alive()
