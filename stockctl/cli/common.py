"""Helpers every command module shares: settings from flags, output, formatting.

Start-up cost is part of the contract: every ``stockctl`` call imports all command modules
(typer needs their signatures for ``--help``), so they import only typer and the standard
library at module level. pydantic, rich, msgspec, httpx and redis are imported inside the
functions that use them; ``tests/unit/test_cli_startup.py`` keeps it so.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stockctl.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from stockctl.settings import Settings


class LazyConsole:
    """A rich ``Console`` built on first use (importing rich costs start-up time); every
    attribute is the real console's. Pass :attr:`real` where rich wants a Console itself."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


console: Any = LazyConsole()
err_console: Any = LazyConsole(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")]


def get_settings(**overrides: Any) -> Settings:
    """Settings from env + flags; a bad value is a one-line usage error naming the setting."""
    from pydantic import ValidationError

    from stockctl.settings import load_settings

    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        from stockctl.settings import config_path, setting_origins

        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        if setting_origins(**overrides).get(str(err["loc"][0]) if err["loc"] else "") == "file":
            hint = f"check {field} in {config_path()} (`stockctl config set {field} VALUE`)"
        else:
            hint = f"check --{field.replace('_', '-')} or STOCKCTL_{field.upper()}"
        raise UsageError(f"bad {field}: {msg}", hint) from None


def emit_line(text: str) -> bool:
    """Write one line of a live stream to stdout; False once the reader has gone (``| head``).

    A closed pipe ends the stream quietly: stdout is pointed at /dev/null so that the exit's
    flush cannot fail again, and the caller stops reading.
    """
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
    return True


def print_json(obj: Any) -> None:
    """One JSON document on stdout (msgspec structs included), never wrapped by rich."""
    import msgspec

    sys.stdout.write(json.dumps(msgspec.to_builtins(obj), indent=2) + "\n")
    sys.stdout.flush()


def fmt_time(ts_ns: int | None) -> str:
    if not ts_ns:
        return "-"
    return datetime.fromtimestamp(ts_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]


def iso_time(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9).astimezone().isoformat(timespec="milliseconds")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def signed_style(text: str) -> str:
    """Rich markup: green for a rise, red for a fall."""
    if text.startswith("-"):
        return f"[red]{text}[/]"
    if text.strip("0.") == "":
        return text
    return f"[green]+{text}[/]"
