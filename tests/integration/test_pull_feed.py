"""stockctl.runtime.pull.Feed against a real nats-server: every message arrives in order with a
request per half batch (not one per fetch), ``room()`` holds requests back, and a consumer
deleted under it is made again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from stockctl.runtime.pull import Feed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

STREAM = "FEEDTEST"


def _config() -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name="feed",
        name="feed",
        filter_subject="feedtest.>",
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=30.0,
        max_ack_pending=10_000,  # nothing is acked here (the default 1,000 would stop delivery)
    )


async def _with_feed(
    url: str, body: Callable[[JetStreamContext, list[Msg], Feed], Awaitable[None]], **kw: object
) -> list[Msg]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.delete_stream(STREAM)
    await js.add_stream(name=STREAM, subjects=["feedtest.>"])
    got: list[Msg] = []
    feed = Feed(nc, js, STREAM, _config(), got.append, **kw)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(lambda: not stop.is_set()))
    try:
        await body(js, got, feed)
    finally:
        stop.set()
        feed.wake.set()
        await asyncio.wait_for(task, 5)
        await js.delete_stream(STREAM)
        await nc.close()
    return got


async def _until(check: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def test_every_message_in_order_with_a_request_per_half_batch(clean) -> None:
    async def body(js: JetStreamContext, got: list[Msg], feed: Feed) -> None:
        for i in range(2000):
            await js.publish(f"feedtest.{i % 3}", b"%d" % i)
        await _until(lambda: len(got) >= 2000)
        # fetch() asked once per batch it returned: with a batch of 100 and messages
        # already stored that is 20 or more; the feed asks once per 50 received.
        assert feed.requested <= 2000 // 50 + 3

    got = asyncio.run(_with_feed(clean.nats_url, body, batch=100))
    assert [m.data for m in got] == [b"%d" % i for i in range(2000)]
    assert got[0].reply.startswith("$JS.ACK.")  # acked by the caller, as fetch's messages are


def test_no_room_holds_requests_back(clean) -> None:
    room = [False]

    async def body(js: JetStreamContext, got: list[Msg], feed: Feed) -> None:
        for i in range(500):
            await js.publish("feedtest.x", b"%d" % i)
        await asyncio.sleep(0.5)
        assert feed.requested == 0 and got == []
        room[0] = True
        await _until(lambda: len(got) >= 500)

    got = asyncio.run(_with_feed(clean.nats_url, body, batch=50, room=lambda: room[0]))
    assert len(got) == 500


def test_a_deleted_consumer_is_made_again(clean) -> None:
    async def body(js: JetStreamContext, got: list[Msg], feed: Feed) -> None:
        await js.publish("feedtest.x", b"before")
        await _until(lambda: len(got) == 1)
        await js.delete_consumer(STREAM, "feed")
        await js.publish("feedtest.x", b"after")
        # Made again with DeliverPolicy.ALL: both come (again), from the stream's start.
        await _until(lambda: [m.data for m in got][-2:] == [b"before", b"after"], 15)

    asyncio.run(_with_feed(clean.nats_url, body, batch=10, expires_s=1.0))


def test_a_server_turning_requests_down_is_not_asked_in_a_tight_loop(clean) -> None:
    async def run() -> int:
        nc = await nats.connect(clean.nats_url)
        js = nc.jetstream()
        with contextlib.suppress(Exception):
            await js.delete_stream(STREAM)
        await js.add_stream(name=STREAM, subjects=["feedtest.>"])
        config = _config()
        config.max_waiting = 1
        await js.add_consumer(STREAM, config=config)
        # Another reader's request takes the one waiting slot: each of the feed's gets a 409.
        other = await nc.subscribe(nc.new_inbox())
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.feed", b'{"batch":1,"expires":5000000000}', other.subject)
        await nc.flush()
        feed = Feed(nc, js, STREAM, config, lambda _: None, batch=10)
        stop = asyncio.Event()
        task = asyncio.create_task(feed.run(lambda: not stop.is_set()))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 5)
        await js.delete_stream(STREAM)
        await nc.close()
        return feed.requested

    # One request per CONFLICT_HOLD_S at the most: 10 in 0.5 s (thousands without the hold).
    assert 1 <= asyncio.run(run()) <= 12
