"""A JetStream pull consumer kept fed: pull requests stay outstanding ahead of the reader.

nats-py's ``PullSubscription.fetch`` is one round trip per batch: a request, the messages the
server has, a status that ends it, and nothing arrives until the next request is sent. Its
``next_msg`` also makes a task, a ``wait_for`` and a uuid per message. At a few thousand
messages a second that round trip, not the work, sets the pace (batches of a few messages).

:class:`Feed` does what the newer clients' ``consume`` does. It subscribes its own inbox with a
callback that hands every message to ``deliver`` as it arrives, and keeps between half a
batch and a batch and a half asked for: once fewer than half of ``batch`` are outstanding (the
rest received or expired), it sends one more request for ``batch``. So the server always has a
request to deliver into, and a request is sent per half batch, not per message or per fetch.

The contract:

* Messages are delivered in the order the server sends them, each once per delivery; acking
  is the caller's (``msg.reply`` is the ack subject, as with ``fetch``).
* A request is taken as done at its ``expires`` (by this client's clock, from before it was
  sent), at a status that ends it (408, 409), or when the connection has reconnected since it
  was sent (a restarted server has none), whichever comes first; one the server lost otherwise
  (a consumer that moved to another leader) is so replaced within ``expires``.
* ``room()`` false holds back new requests (the caller's queue is full): at most what is
  outstanding (a batch and a half) then arrives beyond it. After a 409 no request is sent for
  :data:`CONFLICT_HOLD_S`, so a server that turns every request down (max waiting pulls
  reached) is not asked again in a tight loop.
* A 503 (no responders: the consumer or its stream is gone or between leaders) or a 409
  "Consumer Deleted" makes :meth:`run` make the consumer again (``consumer_info``, else
  ``add_consumer``), as ``pull_subscribe`` does at start.
* A request nats-py cannot send (its reconnect buffer full) is tried again half a second later,
  and making the consumer is retried while NATS answers that it cannot (``Stopped`` once
  ``stop`` is set): :meth:`run` ends when ``keep_going()`` turns false, or on another error.
* After :meth:`run` ends, the inbox is unsubscribed. Messages the server had already sent to a
  request of it are unacked, redelivered after the consumer's ``ack_wait``; a caller that
  hands a partition over reads what it needs from the stream, as it did with ``fetch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from stockctl.runtime.retry import STREAM_BACKOFF, retry
from stockctl.wire.streams import STREAM_UNAVAILABLE

log = logging.getLogger("stockctl.pull")

_STATUS = api.Header.STATUS
_ENDS_REQUEST = ("408", "409")
"""Request Timeout (expired), and Conflict (max waiting, leadership change, consumer deleted)."""
CONFLICT_HOLD_S = 0.05
_GONE = ("503",)
"""No responders: nobody serves the consumer's subject (deleted, or its stream has no leader)."""


@dataclass
class _Request:
    deadline: float
    """``time.monotonic()`` by which the server has ended it."""
    left: int


class Feed:
    """One durable pull consumer's messages, requested ahead and handed to ``deliver``."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        stream: str,
        config: api.ConsumerConfig,
        deliver: Callable[[Msg], None],
        *,
        batch: int,
        expires_s: float = 2.0,
        room: Callable[[], bool] = lambda: True,
        stop: asyncio.Event | None = None,
    ) -> None:
        assert config.durable_name, "a Feed reads a durable consumer"
        self.nc, self.js, self.stream, self.config = nc, js, stream, config
        self.durable: str = config.durable_name
        self.deliver, self.batch, self.expires_s, self.room = deliver, batch, expires_s, room
        self.stop = stop
        # nc.jetstream() with its default prefix is what every stockctl process uses.
        self.next_subject = f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{self.durable}"
        self.requests: deque[_Request] = deque()
        self.wake = asyncio.Event()
        """Set when a request may be due: fewer outstanding, or a request ended (room coming
        back sets nothing: without room, :meth:`run` looks again every 5 ms)."""
        self.gone = False
        self.sub: Subscription | None = None
        self.requested = 0
        """Requests sent, for tests and status."""
        self.reconnects = nc.stats["reconnects"]
        self.hold_until = 0.0
        """No request before this ``time.monotonic()`` (after a 409)."""

    @property
    def outstanding(self) -> int:
        return sum(r.left for r in self.requests)

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:
            self._received()
            self.deliver(msg)
            return
        if status in _ENDS_REQUEST:
            if self.requests:
                self.requests.popleft()
            if status == "409":
                self.hold_until = time.monotonic() + CONFLICT_HOLD_S
            if "Consumer Deleted" in (msg.headers or {}).get(api.Header.DESCRIPTION, ""):
                self.gone = True
        elif status in _GONE:
            self.requests.clear()
            self.gone = True
        self.wake.set()  # 100 (a heartbeat) changes nothing, and costs no more than a look

    def _received(self) -> None:
        reqs = self.requests
        if reqs:
            reqs[0].left -= 1
            if reqs[0].left <= 0:
                reqs.popleft()
        if self.outstanding * 2 < self.batch:
            self.wake.set()

    def _expire(self, now: float) -> None:
        while self.requests and self.requests[0].deadline <= now:
            self.requests.popleft()

    async def _ensure_consumer(self) -> None:
        try:
            await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            await self.js.add_consumer(self.stream, config=self.config)

    async def _request(self) -> None:
        sent = time.monotonic()
        body = json.dumps({"batch": self.batch, "expires": int(self.expires_s * 1e9)}).encode()
        assert self.sub is not None
        await self.nc.publish(self.next_subject, body, reply=self.sub.subject)
        self.requests.append(_Request(sent + self.expires_s, self.batch))
        self.requested += 1

    async def run(self, keep_going: Callable[[], bool]) -> None:
        """Feed ``deliver`` while ``keep_going()`` (checked at least every ``expires_s / 4``)."""
        what = f"the consumer {self.durable}"
        try:
            while keep_going():
                if self.sub is None or self.gone:
                    self.requests.clear()
                    if self.gone:
                        log.warning("%s: gone or between leaders; making it again", what)
                        await asyncio.sleep(0.5)
                    self.gone = False
                    await retry(
                        self._ensure_consumer,
                        stop=self.stop,
                        backoff=STREAM_BACKOFF,
                        retry_on=(NatsError, *STREAM_UNAVAILABLE),
                        what=what,
                        logger=log,
                    )
                    if self.sub is None:
                        self.sub = await self.nc.subscribe(self.nc.new_inbox(), cb=self._on_msg)
                now = time.monotonic()
                self._expire(now)
                if self.nc.stats["reconnects"] != self.reconnects:
                    self.reconnects = self.nc.stats["reconnects"]
                    self.requests.clear()
                if self.outstanding * 2 < self.batch and self.room() and now >= self.hold_until:
                    try:
                        await self._request()
                    except NatsError as exc:  # a reconnect's buffer full, or the connection closing
                        log.warning("%s: pull request not sent (%s: %s)", what, exc.__class__.__name__, exc)
                        await asyncio.sleep(0.5)
                    continue  # maybe a second one: a request may have expired with messages left
                self.wake.clear()
                # Nothing due: wait for a message, a status or the next expiry; when the reader
                # has no room, look again soon (room coming back sets nothing).
                wait = self.requests[0].deadline - now if self.requests else self.expires_s / 4
                if not self.room():
                    wait = min(wait, 0.005)
                if now < self.hold_until:
                    wait = min(wait, self.hold_until - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), max(0.0, min(wait, self.expires_s / 4)))
        finally:
            if self.sub is not None:
                with contextlib.suppress(Exception):
                    await self.sub.unsubscribe()
                self.sub = None
