"""A local WebSocket server that plays an exchange's part from a script of frames.

The script is JSON lines (tests/support/feeds/*.jsonl), played in order across connections:

- ``{"frame": {...}}`` sends the object as a text frame; ``{"raw": "..."}`` sends the text as is
  (malformed frames);
- ``{"expect_subscribe": true}`` waits for the client's first message and records it;
- ``{"ping": "payload"}`` sends a ping frame and records whether the client's pong (same
  payload) came back within 5 s, as Binance requires;
- ``{"disconnect": true}`` drops the TCP connection without a close frame, mid-stream;
- ``{"silence": true}`` sends nothing more on this connection (the client must notice);
- ``{"heartbeats": {...}}`` (last line) sends that heartbeat every 0.2 s, ``sequence`` rising.

Each new connection continues with the line after the one that ended the previous one. The
server runs on its own thread and event loop, so tests (and the daemons they start as real
processes) talk to it over a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

FRAMES = Path(__file__).parent / "feeds"


@dataclass
class FeedServer:
    script: list[dict[str, Any]]
    port: int = 0
    connections: int = 0
    paths: list[str] = field(default_factory=list)
    subscribes: list[Any] = field(default_factory=list)
    pongs: list[tuple[str, bool]] = field(default_factory=list)
    played: int = 0
    _pos: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None

    @classmethod
    def from_file(cls, name: str) -> FeedServer:
        lines = (FRAMES / name).read_text().splitlines()
        return cls([json.loads(line) for line in lines if line.strip() and not line.startswith("//")])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.paths.append(ws.request.path if ws.request else "")
        while self._pos < len(self.script):
            step = self.script[self._pos]
            self._pos += 1
            self.played = self._pos
            if "frame" in step:
                await ws.send(json.dumps(step["frame"]))
            elif "raw" in step:
                await ws.send(step["raw"])
            elif "expect_subscribe" in step:
                self.subscribes.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            elif "ping" in step:
                waiter = await ws.ping(step["ping"].encode())
                try:
                    await asyncio.wait_for(waiter, 5)
                    self.pongs.append((step["ping"], True))
                except TimeoutError:
                    self.pongs.append((step["ping"], False))
            elif "disconnect" in step:
                ws.transport.abort()  # no close frame: the connection just breaks
                return
            elif "silence" in step:
                await ws.wait_closed()
                return
            elif "heartbeats" in step:
                self._pos -= 1  # every later connection heartbeats too
                beat = dict(step["heartbeats"])
                while True:
                    beat["sequence"] += 1
                    await ws.send(json.dumps(beat))
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.01)  # frames a little apart, as from a real exchange
        await ws.wait_closed()

    def start(self) -> FeedServer:
        ready = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            async with serve(self._handler, "127.0.0.1", 0, ping_interval=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await self._stop.wait()

        def runner() -> None:
            self._loop = asyncio.new_event_loop()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(main())

        self._thread = threading.Thread(target=runner, daemon=True)
        self._thread.start()
        assert ready.wait(10), "feed server did not start"
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)
