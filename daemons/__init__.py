"""The long-running stockctl daemons: each module (or package) names its
:class:`~stockctl.runtime.daemon.Daemon` subclass ``DAEMON``; ``python -m daemons NAME`` runs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stockctl.settings import DAEMONS as NAMES

if TYPE_CHECKING:
    from stockctl.runtime.daemon import Daemon

__all__ = ["NAMES", "load"]


def load(name: str) -> type[Daemon]:
    """Daemon ``name``'s Daemon subclass."""
    if name not in NAMES:
        raise ValueError(f"unknown daemon {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f"daemons.{name}").DAEMON
