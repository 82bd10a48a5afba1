"""Help texts say what the commands do: every real component, and the limits they enforce."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from stockctl.cli import app
from stockctl.cli.market import LATEST_MAX
from stockctl.cli.tables import Format, pick_format
from stockctl.components import COMPONENTS, DAEMONS, LOG_SOURCES, SERVERS
from stockctl.errors import UsageError
from stockctl.settings import Settings

runner = CliRunner()


def help_text(*args: str) -> str:
    """``stockctl ARGS --help`` as one line of words: the box drawing and wrapping taken out."""
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    group = group or typer.main.get_command(app)
    for name, cmd in getattr(group, "commands", {}).items():
        if getattr(cmd, "commands", None):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_the_component_lists_are_the_supervisors() -> None:
    # The lists in help come from stockctl.components; the supervisor runs these.
    assert set(Settings(only=[]).components()) <= set(COMPONENTS) == {*SERVERS, *DAEMONS}

    assert f"Component: {', '.join(LOG_SOURCES)}." in help_text("logs")
    assert f"comma separated: {', '.join(COMPONENTS)}." in help_text("up")
    restart = help_text("restart")
    assert all(name in restart for name in COMPONENTS)


def bounded_options() -> list[tuple[tuple[str, ...], str, int, int]]:
    out = []
    for path, cmd in commands():
        if path[0] == "bench":
            continue  # measurements, not listings
        for p in cmd.params:
            if p.name in ("limit", "depth"):
                out.append((path, p.opts[0], p.min, p.max))
    return out


def test_every_listing_bounds_its_limit() -> None:
    listed = {path[-1] for path, *_ in bounded_options()}

    assert listed >= {"history", "candles", "signals", "fills", "trades", "book"}


@pytest.mark.parametrize(("path", "opt", "low", "high"), bounded_options(), ids=lambda v: str(v))
def test_limit_ranges_in_help_are_the_enforced_ones(path: tuple[str, ...], opt: str, low: int, high: int) -> None:
    # Assert: help shows the range the parser holds
    assert f"{opt} <int range> [{low}<=x<={high}]" in help_text(*path)

    # Assert: the parser refuses one past each end, before anything else runs
    needs_arg = ["AAPL"] if path[-1] in ("history", "candles", "signals", "book", "trades") else []
    for bad, rule in ((low - 1, f"greater than or equal to {low}"), (high + 1, f"less than or equal to {high}")):
        result = runner.invoke(app, [*path, *needs_arg, opt, str(bad)])
        assert result.exit_code == 2, (bad, result.output)
        assert rule in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["history", "candles"])
def test_the_latest_bound_in_help_is_enforced_before_any_request(command: str) -> None:
    assert f"the latest 1-{LATEST_MAX}" in help_text(command)

    result = runner.invoke(app, [command, "AAPL", "--limit", str(LATEST_MAX + 1)])

    assert isinstance(result.exception, UsageError) and "give a range" in str(result.exception)


def test_json_and_format_must_agree() -> None:
    assert pick_format(None, True) is Format.json
    assert pick_format(Format.csv, False) is Format.csv
    assert pick_format(None, False) is Format.table
    with pytest.raises(UsageError, match="--json and --format csv disagree"):
        pick_format(Format.csv, True)


TABLE_COMMANDS = [
    ("prices",),
    ("history",),
    ("candles",),
    ("signals",),
    ("orders",),
    ("fills",),
    ("balance",),
    ("markets",),
    ("book",),
    ("trades",),
    ("status",),
    ("doctor",),
    ("alert", "list"),
    ("users", "list"),
    ("config", "show"),
]


def test_every_table_command_takes_format_table_json_or_csv_and_json() -> None:
    found = dict(commands())
    for path in TABLE_COMMANDS:
        opts = {o for p in found[path].params for o in p.opts}
        assert {"--format", "--json"} <= opts, path
        assert "table, json or csv" in help_text(*path), path


def test_orders_all_is_two_tables_so_not_csv() -> None:
    result = runner.invoke(app, ["orders", "--all", "--format", "csv"])

    assert isinstance(result.exception, UsageError) and "use --json" in str(result.exception)
