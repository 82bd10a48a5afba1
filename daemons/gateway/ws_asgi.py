"""The full WebSocket protocol on the REST port too, at ``/api/v1/ws`` (``/ws`` there is seed 002's).

:class:`AsgiSocket` dresses a Starlette WebSocket (served by uvicorn) as the few parts of a
``websockets`` server connection that :class:`~daemons.gateway.ws.WsServer` and the fan-out
use: ``recv``, ``send``, ``close``, iteration, the handshake's headers, and a closed socket
raising ``websockets.ConnectionClosed``. Its ``transport`` is None, so the hub never writes to
it directly: every frame goes through the client's backlog, whose writer awaits each send. A
slow client is thus conflated and closed exactly as on the WebSocket port; the protocol,
auth, close codes and rate limits are the same code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace

import websockets
from starlette.websockets import WebSocket, WebSocketDisconnect

WS_PATH = "/api/v1/ws"


def _closed() -> websockets.ConnectionClosed:
    return websockets.ConnectionClosed(None, None)


class AsgiSocket:
    """A Starlette WebSocket with the interface of ``websockets.asyncio.server.ServerConnection``
    that the gateway's WebSocket code relies on."""

    transport = None  # not writable directly: Client.fast() is False, frames go through the backlog

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.request = SimpleNamespace(headers=ws.headers)  # .get("Authorization"): case-insensitive
        self.closed = False

    async def recv(self) -> str | bytes:
        if self.closed:
            raise _closed()
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
            raise _closed()
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.recv()
            except websockets.ConnectionClosed:
                return

    async def send(self, data: str | bytes, text: bool = True) -> None:
        if self.closed:
            raise _closed()
        try:
            await self.ws.send_text(data.decode() if isinstance(data, bytes) else data)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away mid-send
            self.closed = True
            raise _closed() from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.ws.close(code, reason)
