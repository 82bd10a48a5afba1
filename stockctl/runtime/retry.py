"""Retries: one backoff policy, and one loop that retries a step until it works or the daemon stops.

- :class:`Backoff` is the policy: the delay before retry *n* (counted from 0) is
  ``min(cap, base * 2**n)`` times a random factor in ``[1 - jitter, 1]``, so the many clients
  of a server that went away do not all come back in the same instant.
- :func:`retry` awaits ``step()`` until it returns, and returns what it returned. After each
  failure of a type in ``retry_on`` it calls ``on_error(exc, attempt)`` and sleeps the backoff
  delay. A failure of another type propagates at once. The first attempt is always made (work
  in hand is tried even while stopping); once ``stop`` is set, the next sleep is cut short and
  :class:`Stopped` is raised instead of another attempt. Past ``deadline`` (a
  ``time.monotonic()`` value) it re-raises the last failure instead of sleeping again.
- :func:`pause` is the sleep: ``delay`` seconds, or less if ``stop`` is set meanwhile.

Loops that cannot be a step retried until it succeeds (a feed reconnecting forever, its
backoff reset whenever a connection delivered) use :class:`Backoff` and :func:`pause` alone.

This module imports nothing heavy: the command-line client uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

OnError = Callable[[Exception, int], Awaitable[None] | None]
"""Called with each failure and its attempt number (0 for the first) before the sleep."""


class Stopped(Exception):
    """The daemon was asked to stop before a retried step succeeded.

    :class:`~stockctl.runtime.daemon.Daemon` treats it as a clean stop (exit 0).
    """


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``min(cap, base * 2**attempt)``, scaled by ``[1 - jitter, 1]``."""

    base: float = 0.1
    cap: float = 5.0
    jitter: float = 0.5

    def ceiling(self, attempt: int) -> float:
        """The longest delay before retry ``attempt``: the un-jittered exponential, capped."""
        return min(self.cap, self.base * 2 ** min(max(attempt, 0), 60))

    def delay(self, attempt: int) -> float:
        """The delay before retry ``attempt``: a random point in the top ``jitter`` of the ceiling."""
        return self.ceiling(attempt) * random.uniform(1.0 - self.jitter, 1.0)


BACKOFF = Backoff()
"""The daemons' default: 50-100 % of 0.1 s, 0.2 s, 0.4 s, ... up to 5 s."""
PEER_BACKOFF = Backoff(base=0.05, cap=0.25)
"""For a sibling daemon that ``up`` starts at the same moment (the gateway waiting for auth's keys,
the market makers for the matching engine): a local request that fails at once, so asked
often, and the wait ends at most a quarter of a second after the peer is ready."""
STREAM_BACKOFF = Backoff(cap=1.0)
"""For a JetStream publish waiting out a stream with no leader: a NATS cluster elects a new one
4-9 s after the old one died, and at the default 5 s cap the retry came up to 5 s after that.
One request a second per publisher is nothing to the cluster."""


async def pause(delay: float, stop: asyncio.Event | None = None) -> bool:
    """Sleep ``delay`` seconds, or less if ``stop`` is set first; True if it was."""
    if stop is None:
        await asyncio.sleep(delay)
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()


async def retry(
    step: Callable[[], Awaitable[T]],
    *,
    stop: asyncio.Event | None,
    backoff: Backoff = BACKOFF,
    retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
    on_error: OnError | None = None,
    what: str = "",
    logger: logging.Logger | None = None,
    deadline: float | None = None,
) -> T:
    """``await step()`` until it returns; see the module docstring for the rules.

    With ``logger``, the first failure is logged as ``<what> not ready (<error>); retrying``
    (start-up against a server that may still be starting): one line, not one per retry.
    """
    attempt = 0
    while True:
        try:
            return await step()
        except retry_on as exc:
            if logger is not None and attempt == 0:
                logger.warning("%s not ready (%s); retrying", what or "step", exc)
            if on_error is not None:
                result = on_error(exc, attempt)
                if inspect.isawaitable(result):
                    await result
            delay = backoff.delay(attempt)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                delay = min(delay, left)
        if await pause(delay, stop):
            raise Stopped(what or "stopped while retrying")
        attempt += 1


# --- for the daemons that still write their own ``run(settings)`` ---------------------------
# The gateway and matching call these two; delete them when the lead converts those daemons
# to Daemon subclasses (both are thin adapters over the policy above, not a second one).


async def backoff_sleep(attempt: int, stop: asyncio.Event, backoff: Backoff = BACKOFF) -> None:
    """Sleep ``backoff``'s delay of ``attempt`` (the default backoff), or less if asked to stop."""
    await pause(backoff.delay(attempt), stop)


async def until_ready(
    stop: asyncio.Event, logger: logging.Logger, what: str, step: Callable[[], Awaitable[T]]
) -> T | None:
    """:func:`retry` with its first failure logged; None instead of :class:`Stopped`."""
    if stop.is_set():
        return None
    try:
        return await retry(step, stop=stop, what=what, logger=logger)
    except Stopped:
        return None
