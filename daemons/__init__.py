"""The long-running stockctl daemons, one module each, each exposing ``async def run(settings)``."""

import importlib

NAMES = ("publisher", "processor")


def load(name: str):
    """The ``run`` coroutine function of daemon ``name``."""
    if name not in NAMES:
        raise ValueError(f"unknown daemon {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f"daemons.{name}").run
