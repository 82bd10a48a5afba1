"""``stockctl config path|show|set KEY VALUE``: the config file and the effective settings.

The file is TOML at ``stockctl.settings.config_path()``: top-level keys are the settings'
field names (``gateway_port = 8800``, ``symbols = ["AAPL", "MSFT"]``) and the ``[tui]`` table
holds ``theme`` and ``[tui.keys]`` (action = key). ``set`` checks KEY against the fields and
VALUE against the field's type and rules (the same validators the environment goes
through) before it writes; it keeps the file's comments and other keys, and replaces the
file atomically, mode 0600. ``show`` masks credentials in URLs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from stockctl.cli.common import JsonOpt, console, get_settings
from stockctl.cli.complete import complete_setting
from stockctl.cli.tables import Col, FormatOpt, Report, emit
from stockctl.errors import UsageError

app = typer.Typer(
    no_args_is_help=True,
    help="The config file (TOML): its path, the effective settings and their sources, set one setting.",
)

TUI_KEYS_PREFIX = "tui.keys."


@app.command("path")
def path_cmd() -> None:
    """Print the config file's path: $STOCKCTL_CONFIG, else $XDG_CONFIG_HOME/stockctl/config.toml."""
    from stockctl.settings import config_path

    sys.stdout.write(f"{config_path()}\n")


def _text(value: Any) -> str:
    """A setting's value as one cell: lists comma separated, tables as JSON, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def effective() -> dict[str, dict[str, Any]]:
    """Every setting's effective value (URL credentials masked) and its source."""
    from stockctl.settings import SECRET_FIELDS, mask_url, setting_origins

    settings = get_settings()
    origins = setting_origins()
    values = settings.model_dump(mode="json")
    return {
        name: {"value": mask_url(values[name]) if name in SECRET_FIELDS else values[name], "source": origins[name]}
        for name in values
    }


SOURCE_STYLE = {"default": "dim", "file": "cyan", "env": "yellow", "flag": "green"}


@app.command("show")
def show(json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """The effective settings, secrets masked, and where each comes from: env, file or default."""
    from stockctl.settings import config_path

    doc = effective()
    path = config_path()
    report = Report(
        doc,
        ("setting", "value", "source"),
        ([name, _text(v["value"]), v["source"]] for name, v in doc.items()),
        [Col("setting", "left"), Col("value", "left"), Col("source", "left")],
        [[name, _text(v["value"]), f"[{SOURCE_STYLE[v['source']]}]{v['source']}[/]"] for name, v in doc.items()],
        title=f"settings; config file {path}" + ("" if path.exists() else " (none yet)"),
    )
    emit(report, fmt, json_out)


def resolve_key(key: str) -> tuple[str, str | None]:
    """KEY as (field, binding action): ``gateway-port`` -> gateway_port, ``tui.theme`` -> tui_theme,
    ``tui.keys.quit`` -> (tui_keys, "quit"). An unknown name is a UsageError with close matches."""
    from stockctl.settings import TUI_TABLE, Settings, unknown_setting

    name = key.strip()
    if name.startswith(TUI_KEYS_PREFIX) and len(name) > len(TUI_KEYS_PREFIX):
        return "tui_keys", name[len(TUI_KEYS_PREFIX) :]
    if name.startswith("tui.") and name[4:] in TUI_TABLE:
        return TUI_TABLE[name[4:]], None
    name = name.replace("-", "_")
    if name in Settings.model_fields:
        return name, None
    raise unknown_setting(key, [*Settings.model_fields, "tui.theme", "tui.keys.ACTION"], "")


def _read(path: Path) -> Any:
    import tomlkit

    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text())
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise UsageError(f"bad config file {path}: {exc}", "fix it by hand first") from None


def set_value(path: Path, key: str, value: str) -> Any:
    """Check KEY and VALUE, write them into the file at ``path``; the value as stored."""
    import tomlkit
    from pydantic import ValidationError

    from stockctl.settings import TUI_TABLE, Settings, flatten_config

    field, action = resolve_key(key)
    doc = _read(path)
    current = flatten_config(doc.unwrap(), list(Settings.model_fields), path)
    given: Any = {**current.get("tui_keys", {}), action: value} if action else value
    try:  # defaults + the file with the new value: the rules the file will be read with
        checked = Settings.model_validate({**current, field: given})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if where in (field, "") or where.startswith(f"{field}."):
            raise UsageError(f"bad value {value!r} for {key}: {msg}") from None
        raise UsageError(f"bad {where or 'settings'} with {key} = {value!r}: {msg}", f"see {path}") from None
    stored = checked.model_dump(mode="json")[field]
    if isinstance(getattr(checked, field), Path):  # relative to where `config set` ran, not where it is read
        stored = str(getattr(checked, field).expanduser().resolve())
    tui_names = {v: k for k, v in TUI_TABLE.items()}
    if field in tui_names:
        if "tui" not in doc:
            doc["tui"] = tomlkit.table()
        doc["tui"][tui_names[field]] = stored
    else:
        doc[field] = stored
    write_private(path, tomlkit.dumps(doc))
    return stored


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (a 0600 temp file, fsync, rename) in a 0700 dir."""
    import tempfile

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)


@app.command("set")
def set_cmd(
    key: Annotated[
        str,
        typer.Argument(
            help="A setting (`stockctl config show` lists them), tui.theme, or tui.keys.ACTION.",
            autocompletion=complete_setting,
            show_default=False,
        ),
    ],
    value: Annotated[str, typer.Argument(help="Its value: lists comma separated (AAPL,MSFT).", show_default=False)],
) -> None:
    """Set one setting in the config file, once KEY and VALUE pass the settings' checks."""
    from stockctl.settings import ENV_PREFIX, SECRET_FIELDS, config_path, mask_url

    path = config_path()
    field, action = resolve_key(key)
    stored = set_value(path, key, value)
    shown = _text(stored.get(action) if action else stored)
    console.print(f"set {key} = {mask_url(shown) if field in SECRET_FIELDS else shown} in {path}", soft_wrap=True)
    env = ENV_PREFIX + field.upper()
    if env in os.environ:
        console.print(f"[yellow]note:[/] {env} is set, and the environment wins over the file")
