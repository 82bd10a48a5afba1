"""stockctl.runtime.natsout against a real nats-server: frames arrive whole, in order, and a
JetStream ack frame acknowledges (nats-py's private calls it leans on still do what it needs)."""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import pytest
from nats.js import api

from stockctl.runtime.natsout import Frames, send_frames

pytestmark = pytest.mark.integration


def test_frames_arrive_whole_in_order_and_interleaved_with_publishes(clean) -> None:
    async def run() -> list[tuple[str, bytes]]:
        pub, sub = await nats.connect(clean.nats_url), await nats.connect(clean.nats_url)
        got: list[tuple[str, bytes]] = []
        done = asyncio.Event()

        async def on_msg(msg) -> None:
            got.append((msg.subject, msg.data))
            if len(got) == 1003:
                done.set()

        await sub.subscribe("natsout.>", cb=on_msg)
        await sub.flush()
        frames = Frames()
        frames.add("natsout.a", b"first")
        frames.add("natsout.b", b"")  # an empty payload is a frame too
        frames.add("natsout.a", b"x" * 70_000)  # larger than a socket write
        await send_frames(pub, frames.take(), 3)
        assert frames.take() == b""  # taken frames are gone
        for i in range(1000):
            frames.add("natsout.n", b"%d" % i)
        count = frames.count
        await send_frames(pub, frames.take(), count)
        await asyncio.wait_for(done.wait(), 10)
        await pub.close()
        await sub.close()
        return got

    got = asyncio.run(run())
    assert got[:3] == [("natsout.a", b"first"), ("natsout.b", b""), ("natsout.a", b"x" * 70_000)]
    assert got[3:] == [("natsout.n", b"%d" % i) for i in range(1000)]


def test_an_ack_frame_acknowledges_a_jetstream_message(clean) -> None:
    async def run() -> tuple[int, int]:
        nc = await nats.connect(clean.nats_url)
        js = nc.jetstream()
        await js.add_stream(name="NATSOUT", subjects=["natsout.js.>"])
        for i in range(10):
            await js.publish("natsout.js.x", b"%d" % i)
        psub = await js.pull_subscribe("natsout.js.>", durable="natsout", config=api.ConsumerConfig(ack_wait=30))
        msgs = await psub.fetch(10, timeout=5)
        frames = Frames()
        for m in msgs[:7]:
            frames.add_ack(m.reply)
        await send_frames(nc, frames.take(), 7)
        await nc.flush()
        info = await js.consumer_info("NATSOUT", "natsout")
        await js.delete_stream("NATSOUT")
        await nc.close()
        return info.num_ack_pending, info.ack_floor.stream_seq

    pending, floor = asyncio.run(run())
    assert (pending, floor) == (3, 7)


def test_a_closed_connection_refuses_frames(clean) -> None:
    async def run() -> None:
        nc = await nats.connect(clean.nats_url)
        await nc.close()
        frames = Frames()
        frames.add("natsout.z", b"late")
        with pytest.raises(nats.errors.ConnectionClosedError):
            await send_frames(nc, frames.take(), 1)

    asyncio.run(run())


def test_a_subject_with_a_space_is_refused() -> None:
    with pytest.raises(nats.errors.BadSubjectError):
        Frames().add("bad subject", b"x")
