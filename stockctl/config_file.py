"""The config file: where it is, how its TOML becomes field values, and its settings source.

``$STOCKCTL_CONFIG``, else ``$XDG_CONFIG_HOME/stockctl/config.toml``; top-level keys are
field names and the ``[tui]`` table holds ``theme`` and ``keys``. An unknown key is a
UsageError naming the file and the closest names, so a typo is never silently ignored.
:mod:`stockctl.settings` reads it below the environment.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, TomlConfigSettingsSource

from stockctl.errors import UsageError

CONFIG_ENV = "STOCKCTL_CONFIG"
TUI_TABLE = {"theme": "tui_theme", "keys": "tui_keys"}
"""The ``[tui]`` table of the config file: its keys and the fields they set."""


def config_path() -> Path:
    """The config file: ``$STOCKCTL_CONFIG``, else ``$XDG_CONFIG_HOME/stockctl/config.toml``
    (``~/.config`` by default). It need not exist."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stockctl" / "config.toml"


def unknown_setting(key: str, names: list[str], where: str) -> UsageError:
    """The error for a setting name that is no field, with the closest names as the fix."""
    close = difflib.get_close_matches(key, names, n=3)
    hint = f"did you mean {' or '.join(close)}?" if close else "see `stockctl config show` for the names"
    return UsageError(f"unknown setting {key!r}" + (f" {where}" if where else ""), hint)


def flatten_config(data: dict[str, Any], names: list[str], path: Path) -> dict[str, Any]:
    """The config file's TOML document as field values: ``[tui] theme`` is ``tui_theme``.
    An unknown key is a UsageError naming the file (a typo would otherwise be ignored)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "tui" and isinstance(value, dict):
            for sub, inner in value.items():
                if sub not in TUI_TABLE:
                    raise unknown_setting(f"tui.{sub}", [f"tui.{k}" for k in TUI_TABLE], f"in {path}")
                out[TUI_TABLE[sub]] = inner
        elif key in names and key not in TUI_TABLE.values():
            out[key] = value
        else:
            raise unknown_setting(key, names, f"in {path}")
    return out


class ConfigFileSource(TomlConfigSettingsSource):
    """The config file as a settings source, below the environment; a missing file is empty."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None = None) -> None:
        self.path = path or config_path()
        self.names = list(settings_cls.model_fields)  # the base class reads the file in its __init__
        super().__init__(settings_cls, toml_file=self.path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            with file_path.open(mode="rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            hint = f"fix it, or point {CONFIG_ENV} elsewhere"
            raise UsageError(f"bad config file {file_path}: {exc}", hint) from None
        return flatten_config(data, self.names, Path(file_path))
