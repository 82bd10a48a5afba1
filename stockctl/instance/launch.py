"""How the project starts its own child processes (``python -m daemons NAME`` and the like).

The supervisor, ``stockctl up``, the benchmarks and the tests all start children the same
way: :func:`module_argv`, an environment from :func:`child_env`, stdin closed, stdout and
stderr appended to a log file the caller opened (and closes: how long it stays open is
the caller's business), a working directory. A daemon is ready when its status file
(``run/NAME.json``, written by :mod:`stockctl.runtime.status`) says so for that very
pid (:func:`daemon_ready`).

What differs between callers is passed in, never guessed:

* the base environment: ``os.environ`` for the supervisor and the tests; the benchmarks
  drop ``STOCKCTL_*`` from it first, so a child never sees the user's own instance;
* ``new_session``: the child gets its own session and process group, so a Ctrl-C reaches
  only the parent, which stops its children in order (supervisor, benchmarks, ``up``);
  the tests leave daemons in pytest's group;
* ``die_with_parent``: the kernel sends the child SIGTERM when the parent dies, even by
  SIGKILL (supervisor and benchmarks; Linux only); never for the supervisor ``up`` starts,
  which must outlive the CLI;
* :func:`start` gives a ``subprocess.Popen``; :func:`start_async` an asyncio process, for
  the supervisor, which waits on many children in one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from stockctl.settings import Settings

DAEMONS = "daemons"
SUPERVISOR = "stockctl.instance.supervisor"

_libc: Any = None


def module_argv(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def daemon_argv(name: str) -> list[str]:
    """``python -m daemons NAME``."""
    return module_argv(DAEMONS, name)


def child_env(settings: Settings, base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """``base``, then ``settings`` as ``STOCKCTL_*``, then ``extra``; output unbuffered, so logs are current."""
    return {**base, **settings.to_env(), **extra, "PYTHONUNBUFFERED": "1"}


def status_path(settings: Settings, name: str) -> Path:
    """Where the daemon ``name`` writes its status (ready, pid, counters)."""
    return settings.run_dir / f"{name}.json"


def read_status(path: Path) -> dict[str, Any] | None:
    """A daemon's status file, or None while it is missing or half written."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def daemon_ready(settings: Settings, name: str, pid: int) -> bool:
    """Whether the daemon ``name`` with this ``pid`` says it is ready (an older run's file does not count)."""
    doc = read_status(status_path(settings, name))
    return bool(doc and doc.get("ready")) and doc.get("pid") == pid  # type: ignore[union-attr]


def start(
    argv: list[str],
    *,
    log: IO[bytes],
    env: Mapping[str, str] | None,
    cwd: Path,
    new_session: bool,
    die_with_parent: bool,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output appended to ``log``; ``env=None`` inherits this process's."""
    return subprocess.Popen(argv, **_options(log, env, cwd, new_session, die_with_parent))


async def start_async(
    argv: list[str],
    *,
    log: IO[bytes],
    env: Mapping[str, str] | None,
    cwd: Path,
    new_session: bool,
    die_with_parent: bool,
) -> asyncio.subprocess.Process:
    """:func:`start` for an event loop."""
    return await asyncio.create_subprocess_exec(*argv, **_options(log, env, cwd, new_session, die_with_parent))


def _options(
    log: IO[bytes], env: Mapping[str, str] | None, cwd: Path, new_session: bool, die_with_parent: bool
) -> dict[str, Any]:
    """What both kinds of start pass (asyncio's DEVNULL and STDOUT are subprocess's)."""
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": log,
        "stderr": subprocess.STDOUT,
        "env": env,
        "cwd": str(cwd),
        "start_new_session": new_session,
    }
    if die_with_parent and _load_libc():
        options["preexec_fn"] = _die_with_parent
    return options


def _load_libc() -> bool:
    """Load libc in the parent, so the child's pre-exec hook only makes one call (Linux)."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
    return _libc is not None


def _die_with_parent() -> None:
    """In the child before exec: have the kernel SIGTERM it when its parent dies."""
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
