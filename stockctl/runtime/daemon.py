"""One daemon process, in the shape of uvicorn's ``Server``: startup, main loop, shutdown.

A daemon is a :class:`Daemon` subclass with three coroutines, run in this order by
:meth:`Daemon.serve`:

- ``startup(stack)``: connect and prepare; whatever it opens goes on ``stack`` (an
  ``AsyncExitStack`` that unwinds after shutdown). When it returns, the daemon is ready.
- ``main_loop()``: the work, until ``self.stop`` is set (or until it is done).
- ``shutdown()``: finish what is in flight (confirm, drain) while the connections are open.

The base owns the rest, the same for every daemon:

- Signals: SIGINT and SIGTERM set ``self.stop`` (``should_exit``); the daemon winds down, exit 0.
- Health and metrics (:func:`~stockctl.runtime.ops.start_ops`): listening before startup.
- The status file (``run/<name>.json``): ready and rewritten every second from the moment
  startup returns; removed at exit.
- Child tasks, started with :meth:`Daemon.spawn`, live as long as the daemon. One that ends
  before the daemon is stopping, by raising or by returning, is a failure: it is logged with
  its reason, the daemon stops (shutdown still runs) and the process exits 1, for the
  supervisor to restart it.
- :class:`~stockctl.runtime.retry.Stopped` out of startup or the main loop (told to stop while
  retrying) is a clean stop. Startup that returns with ``stop`` set skips the main loop.

:func:`main` is the process entry point behind ``python -m daemons NAME``: settings, logging,
the event loop, the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from stockctl.runtime.logs import configure_logging
from stockctl.runtime.ops import Ops, start_ops
from stockctl.runtime.process import raise_fd_limit
from stockctl.runtime.retry import Stopped
from stockctl.runtime.status import StatusFile
from stockctl.settings import Settings

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Daemon:
    """The lifecycle every daemon shares; subclasses fill in startup, main loop and shutdown."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.log = logging.getLogger(f"stockctl.{name}")
        self.status = StatusFile(settings, name)
        self.stop = asyncio.Event()
        """Set by a signal, a failed child task, or the daemon itself: time to wind down."""
        self.exit_code = 0
        self._ops: Ops | None = None
        self._children: set[asyncio.Task[Any]] = set()

    # --- what subclasses write --------------------------------------------------------

    async def startup(self, stack: contextlib.AsyncExitStack) -> None:
        """Connect and prepare; register on ``stack`` what must be closed at exit."""

    async def main_loop(self) -> None:
        """The daemon's work; by default, wait to be told to stop."""
        await self.stop.wait()

    async def shutdown(self) -> None:
        """Finish in-flight work; the connections are still open."""

    # --- what subclasses use ----------------------------------------------------------

    @property
    def ops(self) -> Ops:
        """Health checks, gauges and histograms; started before :meth:`startup`."""
        if self._ops is None:
            raise RuntimeError("the ops listener starts in serve(), before startup()")
        return self._ops

    @property
    def should_exit(self) -> bool:
        return self.stop.is_set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a child task: if it ends before the daemon stops, the daemon exits 1."""
        task = asyncio.create_task(coro, name=name)
        self._children.add(task)
        task.add_done_callback(self._child_done)
        return task

    # --- the lifecycle ----------------------------------------------------------------

    async def serve(self) -> int:
        """Run the daemon to its end; the process exit status."""
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.stop.set)
        async with contextlib.AsyncExitStack() as stack:
            try:
                self._ops = await start_ops(stack, self.settings, self.name, self.status)
                try:
                    await self.startup(stack)
                except Stopped:
                    return self.exit_code  # told to stop before it was ready
                if not self.stop.is_set():
                    self.status.ready = True
                    stack.callback(self.status.remove)
                    self.spawn(self.status.run(self.stop), "status file")
                    with contextlib.suppress(Stopped):
                        await self.main_loop()
                self.stop.set()
                await self.shutdown()
            finally:
                # Before the stack unwinds: children may still be using its connections.
                await self._end_children()
        return self.exit_code

    def _child_done(self, task: asyncio.Task[Any]) -> None:
        self._children.discard(task)
        if task.cancelled():
            return  # cancelled on purpose, by the daemon or at its end
        exc = task.exception()  # retrieved here, so asyncio never reports it as unhandled
        if self.stop.is_set():
            if exc is not None:
                self.log.warning("task %s failed while stopping: %s: %s", task.get_name(), type(exc).__name__, exc)
            return
        why = "ended on its own" if exc is None else f"died: {type(exc).__name__}: {exc}"
        self.log.error("task %s %s; stopping (exit 1)", task.get_name(), why, exc_info=exc)
        self.exit_code = 1
        self.stop.set()

    async def _end_children(self) -> None:
        for task in self._children:
            task.cancel()
        await asyncio.gather(*self._children, return_exceptions=True)


async def _serve(name: str, target: type[Daemon], settings: Settings) -> int:
    return await target(settings, name).serve()


def main(name: str, target: type[Daemon]) -> None:
    """Entry point of a daemon process: ``target`` is its Daemon subclass."""
    raise_fd_limit()
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"{name}: bad setting {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        sys.exit(2)
    settings.ensure_dirs()
    logger = configure_logging(name, settings.log_level, settings.log_format)
    logger.info("starting (pid %d)", os.getpid())
    try:
        import uvloop  # a faster event loop: the daemons are I/O-bound Python

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = runner(_serve(name, target, settings))
    if code:
        logger.info("stopped (exit %d)", code)
        sys.exit(code)
    logger.info("stopped")
