"""The CLI starts fast: its modules import no heavy library until a command needs it.

The suite runs hundreds of ``stockctl`` processes and every shell TAB runs one, so
``import stockctl.cli``, ``--version`` and ``--help`` must not pay for pydantic, httpx,
redis, msgspec or websockets (rich only to draw the help).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

HEAVY = ("pydantic", "pydantic_settings", "httpx", "redis", "msgspec", "websockets", "nats", "textual", "asyncio")

PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n"))
sys.argv = ["stockctl", *{args!r}]
from stockctl.cli import main
main()
"""


def loaded_by(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``stockctl ARGS`` in a fresh interpreter; its output and the heavy modules it loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, args=list(args))],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "STOCKCTL_CONFIG": "/nonexistent/config.toml"},
    )
    return proc, json.loads(proc.stderr.strip().splitlines()[-1])


def test_version_is_the_installed_package_version_and_loads_nothing_heavy() -> None:
    proc, heavy = loaded_by("--version")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"stockctl {version('stockctl')}\n"
    assert heavy == []


def test_help_loads_nothing_heavy_and_lists_the_commands() -> None:
    proc, heavy = loaded_by("--help")

    assert proc.returncode == 0, proc.stderr
    for command in ("up", "prices", "fills", "markets", "config", "alert"):
        assert f" {command} " in proc.stdout
    assert heavy == []


def test_a_subcommand_help_loads_only_what_typer_itself_needs() -> None:
    proc, heavy = loaded_by("history", "--help")

    # typer (0.2x) coerces a subcommand's parameters through pydantic's TypeAdapter: its own
    # import, paid by every subcommand. The settings, clients and wire types stay unloaded.
    assert proc.returncode == 0, proc.stderr
    assert "--limit" in proc.stdout
    assert [m for m in heavy if m != "pydantic"] == []
