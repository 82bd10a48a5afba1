"""The terminal's key bindings and theme, and the user's choices of both from the settings.

Every binding has an id, the name the config file uses (``[tui.keys]``, ``tui_keys``:
``quit = "ctrl+q"``, several keys comma separated); :func:`keymap` checks those against the
ids and Textual's key names and returns the keymap for ``App.set_keymap``. :func:`check_theme`
checks ``[tui] theme`` (``tui_theme``) against Textual's theme registry. Both raise UsageError
naming the setting, the bad value and the valid ones, before the app starts.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Iterable, Iterator
from functools import partial

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.keys import Keys, _character_to_key, key_to_character

from stockctl.errors import UsageError

BINDINGS = [
    Binding("q", "quit", "Quit", id="quit"),
    Binding("slash", "filter", "Filter", key_display="/", id="filter"),
    Binding("s", "sort", "Sort", id="sort"),
    Binding("left_square_bracket", "range(-1)", "Range-", key_display="[", id="range_down"),
    Binding("right_square_bracket", "range(1)", "Range+", key_display="]", id="range_up"),
    Binding("i", "interval", "Interval", id="interval"),
    Binding("ctrl+s", "submit_order", "Submit order", priority=True, id="submit_order"),
    Binding("x", "cancel_order", "Cancel order", id="cancel_order"),
    Binding("w", "next_watchlist", "Watchlist", id="next_watchlist"),
    Binding("plus", "edit_watchlist('add')", "Watch+", key_display="+", id="watch_add"),
    Binding("minus", "edit_watchlist('remove')", "Watch-", key_display="-", id="watch_remove"),
    Binding("v", "next_view", "Panel", id="next_view"),
    Binding("t", "change_theme", "Theme", id="theme"),
    Binding("a", "add_alert", "Alert", id="add_alert"),
    Binding("r", "reload", "Reload", show=False, id="reload"),
    *(
        Binding(str(n), f"view('{view}')", title, show=False, id=f"view_{view}")
        for n, (view, title) in enumerate(
            (
                ("chart", "Chart"),
                ("signals", "Signals"),
                ("book", "Book"),
                ("order", "Order entry"),
                ("orders", "Orders"),
                ("fills", "Fills"),
                ("balances", "Balances"),
                ("positions", "Positions"),
            ),
            start=1,
        )
    ),
]
IDS = [b.id for b in BINDINGS if b.id]
MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}
KEY_NAMES = {k.value for k in Keys} | {_character_to_key(c) for c in string.printable if c.strip()}


def palette_commands(app: App[object]) -> Iterator[SystemCommand]:
    """A command palette entry for each binding, its help the action's docstring (Textual's own
    entries already cover quit and the theme picker)."""
    for binding in BINDINGS:
        if binding.action in ("quit", "change_theme"):
            continue
        doc = getattr(app, "action_" + binding.action.split("(")[0], None)
        help_text = (doc.__doc__ or "").strip() if doc else ""
        yield SystemCommand(binding.description, help_text, partial(app.run_action, binding.action))


def _close(value: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(names), n=3)
    return f"did you mean {' or '.join(close)}? " if close else ""


def is_key(key: str) -> bool:
    """Whether Textual can bind ``key``: modifiers, then one character or key name (``ctrl+q``, ``f5``, ``[``)."""
    *mods, last = key.split("+")
    if not last or not MODIFIERS.issuperset(mods):
        return False
    return (len(last) == 1 and last.isprintable()) or last in KEY_NAMES or key_to_character(last) is not None


def keymap(keys: dict[str, str]) -> dict[str, str]:
    """The user's bindings (action id -> key or comma-separated keys) as a Textual keymap."""
    out = {}
    for action, value in keys.items():
        if action not in IDS:
            raise UsageError(
                f"unknown key binding {action!r} in [tui.keys] (STOCKCTL_TUI_KEYS)",
                f"{_close(action, IDS)}the actions are {', '.join(IDS)}",
            )
        parts = [k.strip() for k in value.split(",")]
        bad = [k for k in parts if not is_key(k)]
        if bad:
            raise UsageError(
                f"bad key {bad[0]!r} for {action} in [tui.keys] (STOCKCTL_TUI_KEYS)",
                "use a character or a key name with optional modifiers: b, ctrl+q, f5, escape, shift+tab",
            )
        out[action] = ",".join(parts)
    return out


def check_theme(name: str, available: Iterable[str]) -> str:
    """``name`` if it is a theme in the registry, else UsageError listing the themes."""
    names = sorted(available)
    if name not in names:
        raise UsageError(
            f"unknown theme {name!r} in [tui] theme (STOCKCTL_TUI_THEME)",
            f"{_close(name, names)}the themes are {', '.join(names)}",
        )
    return name
