"""Waiting inside a Textual Pilot test: let the app run until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot


async def until(pilot: Pilot, predicate: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    """Let the app run until ``predicate()`` holds (fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await pilot.pause(0.05)


async def until_still(pilot: Pilot, quiet: float = 0.7, timeout: float = 15.0) -> str:
    """Let the app run until its screen stops changing for ``quiet`` seconds; the screen as SVG.

    Snapshots wait for this: panels flush on their own timers (and flashes fade), so "the data
    is in" is not yet "the screen is final", least of all on a loaded CI machine. ``quiet`` is
    longer than a ticker flash (0.6 s), which would otherwise look still between two looks.
    """
    deadline = time.monotonic() + timeout
    shot = pilot.app.export_screenshot(simplify=True)
    while True:
        await pilot.pause(quiet)
        again = pilot.app.export_screenshot(simplify=True)
        if again == shot:
            return again
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen was still changing after {timeout}s")
        shot = again
