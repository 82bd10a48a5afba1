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


DAEMON_PROBE = """
import json, sys
from stockctl.runtime.process import defer_optional_imports
defer_optional_imports()  # as python -m daemons does, before any daemon module
from daemons import load
import stockctl.runtime.daemon
load({name!r})
ran = [m for m in ("nats", "redis", "valkey", "fastapi") if m in sys.modules]
ran += ["aiohttp"] if "aiohttp.client" in sys.modules else []  # imported, deferred; run only when used
print(json.dumps(sorted(ran)))
"""

SUPERVISOR_PROBE = """
import json, sys
import stockctl.instance.supervisor
from stockctl.instance import infra
infra.redis_server_binary()
print(json.dumps(sorted(m for m in ("nats", "redis", "valkey", "aiohttp", "httpx") if m in sys.modules)))
"""


def _libraries(script: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_each_daemon_imports_only_the_client_libraries_it_uses() -> None:
    # Eight daemons import at once at `up`, on as few as two cores: a library a daemon does
    # not use (redis-py in a NATS-only daemon, aiohttp for nats:// URLs) delays all of them.
    assert _libraries(DAEMON_PROBE.format(name="history")) == ["nats"]
    assert _libraries(DAEMON_PROBE.format(name="publisher")) == ["nats"]
    assert _libraries(DAEMON_PROBE.format(name="auth")) == ["fastapi", "redis"]
    assert _libraries(DAEMON_PROBE.format(name="matching")) == ["nats", "redis"]


def test_the_supervisor_starts_the_servers_without_any_client_library() -> None:
    # It probes NATS over HTTP and Valkey over RESP itself, before any daemon can start.
    assert _libraries(SUPERVISOR_PROBE) == []
