"""The ``bench ws`` client side: raw WebSocket connections, many per worker process.

Run as ``python -m stockctl.bench.ws_client HOST:PORT WORKER_ID`` by the bench.
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import sys
import time
from collections import Counter
from typing import Any

BUCKET_NS = 10_000
"""Latency histogram resolution (10 us)."""
CONNECT_TIMEOUT = 30.0
"""One client's connect + auth + subscribe, at most."""
GIVE_UP_FRACTION = 0.05
MIN_FAILURES_TO_GIVE_UP = 20
"""A worker stops opening connections once this many (or this share of its clients) failed."""
LAG_PROBE_S = 0.01
"""Period of each worker's event-loop lag probe."""


# --- the client side (runs in worker processes) ------------------------------------------

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_QUOTE_PREFIX = b'{"type":"quote"'
_TS_KEY = b'"ts":'
_NEVER = 1 << 62


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class ClientError(Exception):
    """One client could not connect, authenticate or subscribe; ``str`` is a short reason."""


class _Conn(asyncio.Protocol):
    """One bench client: HTTP upgrade, then server frames parsed in place."""

    __slots__ = ("accept", "buf", "closed", "open", "transport", "waiter", "want", "worker")

    def __init__(self, worker: _Worker, accept: bytes) -> None:
        self.worker = worker
        self.accept = accept
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.open = False
        self.closed = False
        self.want = "upgrade"
        self.waiter: asyncio.Future[None] | None = None

    # protocol callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed("connection lost" if exc is None else f"connection lost: {exc.__class__.__name__}")

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            self._upgraded(data[:end])
            if self.closed:
                return
            data = data[end + 4 :]
        w = self.worker
        now = time.time_ns()
        counting = w.t_start <= now < w.t_end
        n = len(data)
        p = 0
        while n - p >= 2:
            b0 = data[p]
            ln = data[p + 1]
            if ln < 126:
                s = p + 2
            elif ln == 126:
                if n - p < 4:
                    break
                ln = (data[p + 2] << 8) | data[p + 3]
                s = p + 4
            elif ln == 127:
                if n - p < 10:
                    break
                ln = int.from_bytes(data[p + 2 : p + 10], "big")
                s = p + 10
            else:  # the mask bit: servers never mask
                self._fail("protocol error: masked server frame")
                return
            e = s + ln
            if e > n:
                break
            if b0 == 0x81 and data.startswith(_QUOTE_PREFIX, s):
                if counting:
                    i = data.find(_TS_KEY, s, e) + 5
                    j = i
                    while 48 <= data[j] <= 57:
                        j += 1
                    if j > i > 4:
                        w.lat.append(now - int(data[i:j]))
            else:
                self._frame(b0 & 0x0F, data[s:e])
                if self.closed:
                    return
            p = e
        if p < n:
            self.buf = data[p:]

    # helpers -------------------------------------------------------------------------------

    def expect(self, want: str) -> asyncio.Future[None]:
        self.want = want
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    def send_text(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(0x1, payload))

    def _resolve(self, exc: Exception | None = None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _upgraded(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status = lines[0].decode(errors="replace")
        if not status.startswith("HTTP/1.1 101"):
            self._fail(f"upgrade refused: {status[:60]}")
            return
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip()
        if headers.get(b"sec-websocket-accept") != self.accept:
            self._fail("upgrade: bad Sec-WebSocket-Accept")
            return
        self.open = True
        if self.want == "upgrade":
            self._resolve()

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x1:
            try:
                kind = json.loads(payload).get("type")
            except (ValueError, AttributeError):
                return
            if kind == self.want:
                self._resolve()
            elif kind == "error" and self.waiter is not None:
                detail = json.loads(payload).get("detail", "")
                self._resolve(ClientError(f"gateway error: {str(detail)[:80]}"))
        elif opcode == 0x9:  # ping -> pong with the same payload
            assert self.transport is not None
            self.transport.write(client_frame(0xA, payload))
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode(errors="replace")
            with contextlib.suppress(Exception):
                assert self.transport is not None
                self.transport.write(client_frame(0x8, payload[:2]))
                self.transport.close()
            self._closed(f"closed {code}: {reason[:80]}".rstrip(": "))

    def _fail(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._closed(reason)

    def _closed(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self.waiter is not None:
            self._resolve(ClientError(reason))
        else:
            self.worker.on_closed(self, reason)


class _Worker:
    """A share of the clients in one process, driven by the parent over a control connection."""

    def __init__(self, wid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.wid = wid
        self.reader, self.writer = reader, writer
        self.conns: list[_Conn] = []
        self.lat: array.array[int] = array.array("q")
        self.t_start = self.t_end = _NEVER
        self.connected = 0
        self.failed = 0
        self.fail_reasons: Counter[str] = Counter()
        self.closed = 0
        self.close_reasons: Counter[str] = Counter()
        self.connect_ms: list[float] = []
        self.subscribers: Counter[str] = Counter()

    def send(self, doc: dict[str, Any]) -> None:
        self.writer.write(json.dumps(doc, separators=(",", ":")).encode() + b"\n")

    def on_closed(self, conn: _Conn, reason: str) -> None:
        self.closed += 1
        self.close_reasons[reason] += 1

    async def open_one(self, host: str, port: int, token: bytes, channels: list[str]) -> float:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        key = base64.b64encode(os.urandom(16))
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        conn = _Conn(self, accept)
        try:
            await loop.create_connection(lambda: conn, host, port)
            upgraded = conn.expect("upgrade")
            assert conn.transport is not None
            conn.transport.write(
                b"GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host.encode(), port, key)
            )
            await upgraded
            welcome = conn.expect("welcome")
            conn.send_text(b'{"op":"auth","token":"' + token + b'"}')
            await welcome
            subscribed = conn.expect("subscribed")
            conn.send_text(json.dumps({"op": "subscribe", "channels": channels}).encode())
            await subscribed
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        self.conns.append(conn)
        return (time.perf_counter() - t0) * 1000

    async def connect_all(self, cfg: dict[str, Any]) -> None:
        host, port, token = cfg["host"], cfg["port"], cfg["token"].encode()
        symbols: list[str] = cfg["symbols"]
        per = cfg["channels_per_client"]
        indices = range(cfg["first"], cfg["clients"], cfg["step"])
        sem = asyncio.Semaphore(cfg["concurrency"])
        # A gateway that refuses or times out many clients, or takes too long, fails the run
        # anyway: stop opening connections then, and measure the ones that are open.
        max_failures = max(MIN_FAILURES_TO_GIVE_UP, int(GIVE_UP_FRACTION * len(indices)))
        deadline = time.monotonic() + cfg["budget_s"]
        gave_up = ""

        async def one(i: int) -> None:
            nonlocal gave_up
            syms = [symbols[(i + k) % len(symbols)] for k in range(per)]
            async with sem:
                if not gave_up and self.failed >= max_failures:
                    gave_up = f"not tried: gave up after {self.failed:,} failures"
                elif not gave_up and time.monotonic() > deadline:
                    gave_up = f"not tried: connecting took over {cfg['budget_s']:g}s"
                if gave_up:
                    self.failed += 1
                    self.fail_reasons[gave_up] += 1
                    return
                try:
                    ms = await asyncio.wait_for(
                        self.open_one(host, port, token, [f"quotes:{s}" for s in syms]), CONNECT_TIMEOUT
                    )
                except TimeoutError:
                    self.failed += 1
                    self.fail_reasons[f"timeout after {CONNECT_TIMEOUT:g}s"] += 1
                    return
                except (OSError, ClientError) as exc:
                    self.failed += 1
                    self.fail_reasons[str(exc)[:100] or exc.__class__.__name__] += 1
                    return
            self.connected += 1
            self.connect_ms.append(round(ms, 3))
            self.subscribers.update(syms)

        async def report() -> None:
            while True:
                await asyncio.sleep(0.25)
                self.send({"event": "progress", "connected": self.connected, "failed": self.failed})

        reporter = asyncio.create_task(report())
        try:
            await asyncio.gather(*(one(i) for i in indices))
        finally:
            reporter.cancel()
        self.send(
            {
                "event": "connected",
                "connected": self.connected,
                "failed": self.failed,
                "fail_reasons": dict(self.fail_reasons),
                "connect_ms": self.connect_ms,
                "subscribers": dict(self.subscribers),
            }
        )

    async def measure(self, start_ns: int, end_ns: int) -> None:
        self.t_start, self.t_end = start_ns, end_ns
        lags: list[float] = []
        probe = asyncio.create_task(self.lag_probe(start_ns, end_ns, lags))
        while (now := time.time_ns()) < end_ns:
            await asyncio.sleep(min(0.5, (end_ns - now) / 1e9))
            self.send({"event": "progress", "quotes": len(self.lat), "closed": self.closed})
        await probe
        hist: Counter[int] = Counter(v // BUCKET_NS for v in self.lat)
        self.send(
            {
                "event": "result",
                "quotes": len(self.lat),
                "max_ns": max(self.lat, default=0),
                "hist": {str(k): v for k, v in hist.items()},
                "lag_ms": lags,
                "closed": self.closed,
                "close_reasons": dict(self.close_reasons),
                "open": sum(1 for c in self.conns if not c.closed),
            }
        )

    @staticmethod
    async def lag_probe(start_ns: int, end_ns: int, lags: list[float]) -> None:
        """How late this worker's event loop wakes up (ms): the clients' own share of the latency."""
        await asyncio.sleep(max(0.0, (start_ns - time.time_ns()) / 1e9))
        clock = time.perf_counter
        while time.time_ns() < end_ns:
            t0 = clock()
            await asyncio.sleep(LAG_PROBE_S)
            lags.append(round((clock() - t0 - LAG_PROBE_S) * 1000, 2))

    async def run(self) -> None:
        """Obey the parent's commands until ``exit`` or until it goes away, whatever phase is running."""
        self.send({"event": "hello", "worker": self.wid, "pid": os.getpid()})
        phase: asyncio.Task[None] | None = None
        while True:
            line = await self.reader.readline()
            cmd = json.loads(line) if line else {"op": "exit"}
            op = cmd.get("op")
            if op == "exit":
                break
            if phase is not None:
                await phase  # phases run one after the other
            if op == "connect":
                phase = asyncio.create_task(self.connect_all(cmd))
            elif op == "measure":
                phase = asyncio.create_task(self.measure(cmd["start_ns"], cmd["end_ns"]))
        if phase is not None and not phase.done():
            phase.cancel()
            with contextlib.suppress(BaseException):
                await phase
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()
        self.writer.close()


async def _worker_main(address: str, wid: int) -> None:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    await _Worker(wid, reader, writer).run()


def worker_main(argv: list[str]) -> None:
    """``python -m stockctl.bench.ws_client HOST:PORT WORKER_ID``: one client worker."""
    from stockctl.runtime.process import raise_fd_limit

    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_worker_main(argv[0], int(argv[1])))


if __name__ == "__main__":
    worker_main(sys.argv[1:])
