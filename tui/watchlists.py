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


# --- editing from the app (imports are local: this part is additive to the reader above) ------

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def check_name(name: str) -> str:
    """A watchlist name one can edit: 1-40 letters, digits, ``_`` or ``-``, and not ``all``."""
    name = name.strip()
    if not name or len(name) > 40 or not NAME_CHARS.issuperset(name):
        raise WatchlistError(f"bad watchlist name {name[:40]!r}: use 1-40 letters, digits, _ or -")
    if name.lower() == ALL:
        raise WatchlistError("'all' is every symbol and cannot be edited: name a watchlist, or press w to pick one")
    return name


def edit_watchlist(name: str, symbol: str, add: bool, base: Path | None = None) -> tuple[Watchlists, bool]:
    """Add ``symbol`` to (``add``) or remove it from the watchlist ``name`` in the watchlists
    file, and the lists as saved, with whether anything changed. A new name makes a new list;
    without a file, ``watchlists.toml`` is made. A TOML file keeps its comments; the file is
    replaced atomically. The symbol is checked with :func:`stockctl.wire.symbols.parse_symbol`
    (UsageError); a bad name or file is a WatchlistError."""
    import os
    import tempfile

    import tomlkit

    from stockctl.wire.symbols import parse_symbol

    name, symbol = check_name(name), parse_symbol(symbol)
    base = base if base is not None else config_dir()
    path = watchlists_path(base) or base / FILES[0]
    toml = path.suffix == ".toml"
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        doc: Any = tomlkit.parse(text) if toml else (json.loads(text) if text.strip() else {})
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError, json.JSONDecodeError) as exc:
        raise WatchlistError(f"{path}: {exc}; fix it by hand first") from None
    parse_watchlists(doc.unwrap() if toml else doc, str(path))  # the same shape rules as reading
    table = doc["watchlists"] if isinstance(doc.get("watchlists"), dict) else doc
    current = [str(s) for s in table.get(name, [])]
    kept = [s for s in current if s.strip().upper() != symbol]
    changed = len(kept) == len(current) if add else len(kept) != len(current)
    if changed:
        table[name] = [*current, symbol] if add else kept
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(tomlkit.dumps(doc) if toml else json.dumps(doc, indent=2) + "\n")
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return load_watchlists(base), changed
