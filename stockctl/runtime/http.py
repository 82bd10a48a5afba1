"""HTTP plumbing shared by the daemons that serve it: a uvicorn server and a body-size limit.

- :class:`SignalFreeServer` runs uvicorn under the daemon's own signal handling: it never
  installs handlers, and it stops when the daemon sets ``should_exit``. :class:`UvicornServer`
  is one with the settings the ops listener and the gateway share.
- :class:`BodyLimit` is ASGI middleware that refuses a request body over a limit with 413
  before the app reads it, whether the length is declared or the body is chunked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import uvicorn

MAX_BODY_BYTES = 1024 * 1024
"""No HTTP request body larger than this is read into memory (endpoints set tighter limits)."""


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before the app reads it.

    A declared ``Content-Length`` is refused at once; a chunked body is read up to the limit
    and then refused, so an endless upload costs at most ``limit`` bytes of memory.
    """

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": "too_large", "detail": f"request body over {self.limit} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SignalFreeServer(uvicorn.Server):
    """uvicorn that never touches signals: the daemon owns them and sets ``should_exit``.

    uvicorn re-raises a captured SIGTERM after serving, which would turn a graceful
    stop into death by signal.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def wait_started(self, task: asyncio.Task[None]) -> None:
        """Return once listening; re-raise why not if serving ended first (a port in use)."""
        while not self.started:
            if task.done():
                task.result()
                raise RuntimeError("HTTP server stopped before it started")
            await asyncio.sleep(0.02)


class UvicornServer(SignalFreeServer):
    """A :class:`SignalFreeServer` with the daemons' usual settings: quiet, no lifespan, bounded."""

    def __init__(self, app: Any, host: str, port: int, ws: str = "none") -> None:
        # ws="none" unless the app serves WebSocket routes (the gateway's seed door does).
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                server_header=False,
                proxy_headers=False,  # X-Forwarded-For is believed only as stockctl.proxies says
                ws=ws,
                ws_max_size=16 * 1024,
                limit_concurrency=20_000,
                timeout_graceful_shutdown=5,
            )
        )
