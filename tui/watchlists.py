"""Watchlists: named groups of symbols that filter the ticker board.

They live in ``$XDG_CONFIG_HOME/stockctl/watchlists.toml`` (or ``watchlists.json``;
the TOML file wins when both exist)::

    # watchlists.toml
    tech = ["AAPL", "MSFT"]
    inr = ["JIO_INR", "TATA_INR"]

A top-level ``[watchlists]`` table (``{"watchlists": {...}}`` in JSON) is read the same
way. The list ``all`` (every symbol) always comes first; a file that defines ``all``
replaces it with that group. Symbols are matched case-insensitively and checked as every
other door checks them (:func:`stockctl.wire.symbols.parse_symbol`): ``BRK.B`` and
``btc/usdt`` are fine, a control character, wildcard or look-alike letter is a
:class:`WatchlistError` naming the file, the list and the reason.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockctl.client.credentials import config_dir
from stockctl.errors import StockctlError
from stockctl.wire.symbols import parse_symbol

ALL = "all"
FILES = ("watchlists.toml", "watchlists.json")


class WatchlistError(ValueError):
    """The watchlists file cannot be read or has the wrong shape (the message says which and why)."""


@dataclass
class Watchlists:
    """Names in order (``all`` first) and each one's symbols (None for every symbol)."""

    groups: dict[str, frozenset[str] | None] = field(default_factory=lambda: {ALL: None})
    path: Path | None = None

    @property
    def names(self) -> list[str]:
        return list(self.groups)

    def after(self, name: str) -> str:
        """The name after ``name`` (wrapping round; ``all`` if ``name`` is unknown)."""
        names = self.names
        return names[(names.index(name) + 1) % len(names)] if name in names else ALL


def watchlists_path(base: Path | None = None) -> Path | None:
    """The watchlists file in ``base`` (default: the stockctl config dir), None if there is none."""
    base = base if base is not None else config_dir()
    for name in FILES:
        if (base / name).is_file():
            return base / name
    return None


def parse_watchlists(doc: Any, where: str = "watchlists") -> dict[str, frozenset[str] | None]:
    """Groups from a decoded TOML/JSON document (``all`` first)."""
    if isinstance(doc, dict) and isinstance(doc.get("watchlists"), dict):
        doc = doc["watchlists"]
    if not isinstance(doc, dict):
        raise WatchlistError(f"{where}: expected a table of name = [symbols]")
    groups: dict[str, frozenset[str] | None] = {ALL: None}
    for name, symbols in doc.items():
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise WatchlistError(f"{where}: {name!r} must be a list of symbols (strings)")
        try:
            groups[str(name)] = frozenset(parse_symbol(s) for s in symbols if s.strip())
        except StockctlError as exc:
            raise WatchlistError(f"{where}: {name}: {exc}") from None
    return groups


def load_watchlists(base: Path | None = None) -> Watchlists:
    """The user's watchlists (just ``all`` without a file); WatchlistError if the file is bad."""
    path = watchlists_path(base)
    if path is None:
        return Watchlists()
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise WatchlistError(f"{path}: {exc}") from None
    return Watchlists(parse_watchlists(doc, str(path)), path)
