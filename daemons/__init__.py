"""The long-running stockctl daemons, one module each, each exposing ``async def run(settings)``."""

import importlib
from collections.abc import Awaitable, Callable

from stockctl.settings import DAEMONS as NAMES
from stockctl.settings import Settings

__all__ = ["NAMES", "load"]


def load(name: str) -> Callable[[Settings], Awaitable[None]]:
    """The ``run`` coroutine function of daemon ``name``."""
    if name not in NAMES:
        raise ValueError(f"unknown daemon {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f"daemons.{name}").run
