"""Helpers every command module shares: settings from flags, output, formatting."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Annotated, Any

import msgspec
import typer
from pydantic import ValidationError
from rich.console import Console

from stockctl.errors import UsageError
from stockctl.settings import Settings, load_settings

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")]


def get_settings(**overrides: Any) -> Settings:
    """Settings from env + flags; a bad value is a one-line usage error naming the setting."""
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        raise UsageError(
            f"bad {field}: {msg}", f"check --{field.replace('_', '-')} or STOCKCTL_{field.upper()}"
        ) from None


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
