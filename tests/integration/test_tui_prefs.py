"""The terminal's preferences: watchlists edited in the app and saved, themes from Textual's
registry chosen in the settings or the picker, and key bindings from the config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockctl.errors import UsageError
from stockctl.settings import Settings
from tests.support.pilot import until
from tui.app import StockApp, make_app
from tui.demo import demo_data
from tui.keys import IDS, is_key, keymap
from tui.watchlists import ALL, WatchlistError, edit_watchlist, load_watchlists
from tui.widgets.ticker_board import TickerBoard


@pytest.fixture(autouse=True)
def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in ("STOCKCTL_TUI_THEME", "STOCKCTL_TUI_KEYS", "STOCKCTL_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path / "config" / "stockctl"


def _app(tmp_path: Path, **settings: object) -> StockApp:
    return make_app(Settings(home=tmp_path / "home", **settings), data=demo_data())  # type: ignore[arg-type]


def board(app: StockApp) -> TickerBoard:
    return app.panel(TickerBoard)


# --- watchlists -----------------------------------------------------------------------------


def test_edit_watchlist_file_keeps_comments_checks_symbols_and_names(tmp_path: Path) -> None:
    base = tmp_path / "conf"

    lists, changed = edit_watchlist("tech", " aapl ", add=True, base=base)  # no file yet: made
    assert changed and lists.groups["tech"] == frozenset({"AAPL"})
    path = base / "watchlists.toml"
    path.write_text('# my lists\ntech = ["AAPL"]  # big ones\ninr = ["jio_inr"]\n')
    _, changed = edit_watchlist("tech", "MSFT", add=True, base=base)
    assert changed and path.read_text().startswith("# my lists\ntech = [")
    assert "# big ones" in path.read_text()
    assert load_watchlists(base).groups["tech"] == frozenset({"AAPL", "MSFT"})
    _, changed = edit_watchlist("tech", "msft", add=True, base=base)
    assert not changed
    lists, changed = edit_watchlist("inr", "JIO_INR", add=False, base=base)  # the file's "jio_inr"
    assert changed and lists.groups["inr"] == frozenset()
    assert not edit_watchlist("inr", "TATA_INR", add=False, base=base)[1]
    before = path.read_text()
    with pytest.raises(UsageError, match="bad symbol 'BAD SYM!'"):
        edit_watchlist("tech", "BAD SYM!", add=True, base=base)
    with pytest.raises(WatchlistError, match="'all' is every symbol"):
        edit_watchlist("ALL", "AAPL", add=True, base=base)
    with pytest.raises(WatchlistError, match="bad watchlist name"):
        edit_watchlist("my list", "AAPL", add=True, base=base)
    assert path.read_text() == before
    # A JSON file stays JSON, its [watchlists] table where it was.
    path.unlink()
    (base / "watchlists.json").write_text('{"watchlists": {"fx": ["JIO_INR"]}}')
    edit_watchlist("fx", "TATA_INR", add=True, base=base)
    assert json.loads((base / "watchlists.json").read_text()) == {"watchlists": {"fx": ["JIO_INR", "TATA_INR"]}}


async def test_watchlist_add_and_remove_in_the_app(tmp_path: Path, _config: Path) -> None:
    _config.mkdir(parents=True)
    (_config / "watchlists.toml").write_text('tech = ["AAPL"]\n')
    app = _app(tmp_path)

    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: len(board(app).visible_symbols()) == 4, what="board")
        await pilot.press("w")
        assert board(app).visible_symbols() == ["AAPL"]
        await pilot.press("plus")
        await until(pilot, lambda: app.screen.query("#watch-symbol"), 3, "the watchlist form")
        assert app.screen.query_one("#watch-name").value == "tech"
        assert app.screen.query_one("#watch-symbol").value == "AAPL"  # the selected symbol
        # A bad symbol: the rule in the form, nothing saved, the form stays.
        app.screen.query_one("#watch-symbol").value = "MS FT"
        await pilot.press("enter")
        status = app.screen.query_one("#watch-status")
        assert status.has_class("error") and "bad symbol 'MS FT'" in str(status.render())
        assert "MS" not in (_config / "watchlists.toml").read_text()
        app.screen.query_one("#watch-symbol").value = "msft"
        await pilot.press("enter")
        await until(pilot, lambda: board(app).visible_symbols() == ["AAPL", "MSFT"], 3, "MSFT on the board")
        assert load_watchlists(_config).groups["tech"] == frozenset({"AAPL", "MSFT"})
        assert any("MSFT added to tech" in n.message for n in app._notifications)
        # Remove the selected one; escape leaves the file alone.
        await pilot.press("minus")
        await until(pilot, lambda: app.screen.query("#watch-symbol"), 3, "the remove form")
        await pilot.press("escape")
        assert load_watchlists(_config).groups["tech"] == frozenset({"AAPL", "MSFT"})
        await pilot.press("minus")
        await until(pilot, lambda: app.screen.query("#watch-symbol"), 3, "the remove form")
        app.screen.query_one("#watch-symbol").value = "AAPL"
        await pilot.press("enter")
        await until(pilot, lambda: board(app).visible_symbols() == ["MSFT"], 3, "AAPL gone")
        assert load_watchlists(_config).groups["tech"] == frozenset({"MSFT"})
        await until(pilot, lambda: app.selected == "MSFT", 3, "the selection follows the list")
        # On "all", the form asks for a list name: a new one is made.
        await pilot.press("w")
        assert board(app).watch_name == ALL
        await pilot.press("plus")
        await until(pilot, lambda: app.screen.query("#watch-name"), 3, "the form")
        assert app.screen.query_one("#watch-name").value == ""
        app.screen.query_one("#watch-name").value = "inr"
        app.screen.query_one("#watch-symbol").value = "TATA_INR"
        await pilot.press("enter")
        await until(pilot, lambda: board(app).watch_name == "inr", 3, "the new list shown")
        assert load_watchlists(_config).names == [ALL, "tech", "inr"]


# --- themes and keys ------------------------------------------------------------------------


async def test_theme_from_settings_then_the_picker(tmp_path: Path) -> None:
    app = _app(tmp_path, tui_theme="nord")

    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "nord"
        await pilot.press("t")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", 3, "the theme picker")
        await pilot.press(*"dracula")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "dracula", 3, "dracula")


async def test_keys_from_settings_rebind_the_actions(tmp_path: Path) -> None:
    app = _app(tmp_path, tui_keys={"next_view": "n", "view_book": "b,f3", "quit": "ctrl+q"})

    async with app.run_test(size=(100, 30)) as pilot:  # narrow: one panel at a time
        await until(pilot, lambda: len(board(app).visible_symbols()) == 4, what="board")
        board(app).table.focus()
        await pilot.press("v")  # no longer bound
        assert app.view == "chart"
        await pilot.press("n")
        assert app.view == "signals"
        await pilot.press("f3")
        assert app.view == "book"
        await pilot.press("q")  # rebound to ctrl+q: q does nothing
        assert app.is_running
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running, 3, "quit on ctrl+q")


def test_bad_theme_or_key_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown theme 'nrod' in \[tui\] theme .*did you mean nord\?"):
        _app(tmp_path, tui_theme="nrod")
    with pytest.raises(UsageError, match=r"unknown key binding 'buy' .*the actions are quit, filter"):
        keymap({"buy": "b"})
    with pytest.raises(UsageError, match=r"bad key 'ctrl\+bogus' for quit"):
        keymap({"quit": "ctrl+bogus"})
    assert all(is_key(k) for k in ("b", "ctrl+q", "f5", "escape", "shift+tab", "[", "left_square_bracket", "plus"))
    assert len(IDS) == len(set(IDS))
    # From the CLI: one line on stderr, exit 2, before any terminal is opened.
    env = {**os.environ, "STOCKCTL_TUI_THEME": "nrod", "STOCKCTL_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", "from stockctl.cli import main; main()", "tui"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "unknown theme 'nrod'" in done.stderr and "Traceback" not in done.stderr
