"""Core-NATS publishes in bulk: a batch's messages handed to nats-py as one write.

:class:`Frames` collects ``PUB`` frames (a JetStream ack is a ``PUB`` of an empty payload to
the message's reply subject) and :func:`send_frames` gives them to nats-py's outgoing buffer
in one piece, which the flusher then writes with one system call. ``nc.publish`` per message
costs a coroutine, subject checks and a buffer entry each; uvloop then writes every entry
separately. Delivery is what ``nc.publish`` gives: buffered during a reconnect (up to the
connection's ``pending_size``), at most once, in order with the connection's other publishes.

It leans on ``Client._send_command`` and ``Client._flush_pending``, the two calls nats-py's own
``publish`` ends in (unchanged from nats-py 2.0 to 2.16): if a release changes them,
tests/integration/test_natsout.py fails rather than the daemons.
"""

from __future__ import annotations

from nats import errors
from nats.aio.client import Client as NATS


class Frames:
    """``PUB`` frames in the order they are added; subjects' prefixes encoded once and kept."""

    __slots__ = ("_parts", "_prefix", "count")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._prefix: dict[str, bytes] = {}
        self.count = 0

    def prefix(self, subject: str) -> bytes:
        """``b"PUB <subject> "``: cached, so a symbol's subjects are encoded once per process."""
        p = self._prefix.get(subject)
        if p is None:
            if not subject or any(c in subject for c in " \t\r\n"):
                raise errors.BadSubjectError
            p = self._prefix[subject] = f"PUB {subject} ".encode()
        return p

    def add(self, subject: str, payload: bytes) -> None:
        self._parts += (self.prefix(subject), b"%d\r\n" % len(payload), payload, b"\r\n")
        self.count += 1

    def add_ack(self, reply: str) -> None:
        """``+ACK`` of a JetStream message: an empty publish to its reply subject (not cached)."""
        self._parts.append(b"PUB %s 0\r\n\r\n" % reply.encode())
        self.count += 1

    def take(self) -> bytes:
        """Everything added, as one buffer; the frames are cleared (the prefixes kept)."""
        data = b"".join(self._parts)
        self._parts.clear()
        self.count = 0
        return data


async def send_frames(nc: NATS, data: bytes, count: int) -> None:
    """Hand ``data`` (``count`` messages' frames) to nats-py as ``publish`` would, in one call.

    Raises what ``publish`` raises: ``ConnectionClosedError``, ``ConnectionDrainingError``,
    ``OutboundBufferLimitError`` when disconnected with the reconnect buffer full.
    """
    if not data:
        return
    if nc.is_closed:
        raise errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise errors.ConnectionDrainingError
    if not nc.is_connected:
        limit = nc._max_pending_size
        if limit <= 0 or len(data) + nc._pending_data_size > limit:
            raise errors.OutboundBufferLimitError
    nc.stats["out_msgs"] += count
    nc.stats["out_bytes"] += len(data)  # frame bytes (publish counts payloads only): close enough
    await nc._send_command(data)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
