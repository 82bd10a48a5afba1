"""A daemon's status file and its state-change log lines.

- :class:`StatusFile` is ``run/<name>.json``: readiness, counters, per-second rates and free-form
  info, rewritten atomically (write a temporary file, rename it over the old one) so a reader
  never sees half a document. The supervisor waits on ``ready``; ``stockctl status`` shows the
  rates; the ops listener turns the counters into metrics.
- :class:`StateLog` logs a dependency's state (connected, failing, ...) once per change, never
  once per retry, so an outage is one warning and its end one info line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from stockctl.runtime.retry import pause
from stockctl.settings import Settings


class StateLog:
    """Logs a connection's state only when it changes, never once per retry."""

    HEALTHY = frozenset({"connected", "reconnected", "ok", "on time"})

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log, self._what = logger, what
        self._state: str | None = None

    def set(self, state: str, detail: str = "") -> None:
        previous, self._state = self._state, state
        if state == previous:
            return
        if state in self.HEALTHY:
            if previous is None and state != "connected":
                return  # healthy from the start: nothing worth a line
            level = logging.INFO
        else:
            level = logging.WARNING
        self._log.log(level, "%s %s%s", self._what, state, f": {detail}" if detail else "")

    @property
    def state(self) -> str | None:
        return self._state


class StatusFile:
    """``run/<name>.json``: readiness, counters and rates, rewritten every second.

    The supervisor waits on ``ready`` and ``stockctl status`` shows the rates.
    """

    def __init__(self, settings: Settings, name: str) -> None:
        self.path: Path = settings.run_dir / f"{name}.json"
        self.name = name
        self.ready = False
        self.counters: dict[str, int] = {}
        self.info: dict[str, Any] = {}
        self._rates: dict[str, float] = {}
        self._last: tuple[float, dict[str, int]] = (time.monotonic(), {})
        self.started = time.time()

    def incr(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def write(self) -> None:
        now = time.monotonic()
        then, before = self._last
        if now - then >= 0.5:
            self._rates = {k: round((v - before.get(k, 0)) / (now - then), 1) for k, v in self.counters.items()}
            self._last = (now, dict(self.counters))
        doc = {
            "name": self.name,
            "pid": os.getpid(),
            "ready": self.ready,
            "started": self.started,
            "updated": time.time(),
            "counters": self.counters,
            "rates": self._rates,
            "info": self.info,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=str))
        tmp.replace(self.path)

    async def run(self, stop: asyncio.Event) -> None:
        """Rewrite the file every second until ``stop`` is set."""
        while not stop.is_set():
            self.write()
            await pause(1.0, stop)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
