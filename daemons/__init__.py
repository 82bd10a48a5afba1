"""The long-running stockctl daemons, one module each.

A converted daemon module names its :class:`~stockctl.runtime.daemon.Daemon` subclass
``DAEMON``; the gateway and matching still expose ``async def run(settings)``, which
:func:`load` returns instead until they are converted too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stockctl.settings import DAEMONS as NAMES

if TYPE_CHECKING:
    from stockctl.runtime.daemon import Daemon, LegacyRun

__all__ = ["NAMES", "load"]


def load(name: str) -> type[Daemon] | LegacyRun:
    """Daemon ``name``'s Daemon subclass (or, for a daemon not converted yet, its ``run``)."""
    if name not in NAMES:
        raise ValueError(f"unknown daemon {name!r}; known: {', '.join(NAMES)}")
    module = importlib.import_module(f"daemons.{name}")
    # Legacy branch: remove the fallback to `run` once gateway and matching define DAEMON.
    return getattr(module, "DAEMON", None) or module.run
