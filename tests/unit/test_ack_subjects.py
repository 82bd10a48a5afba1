"""The processor reads a tick's stream sequence and the consumer's pending count straight from
the ack subject: the same as nats-py's ``msg.metadata`` in both of its forms."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from daemons.processor import num_pending, stream_seq

REPLIES = [
    "$JS.ACK.MD_TICKS.processor-p3.1.4711.812.1733300000000000000.42",  # v1: 9 tokens
    "$JS.ACK.hub.ACCHASH.MD_TICKS.processor-p3.1.4711.812.1733300000000000000.42.rnd",  # v2
]


@pytest.mark.parametrize("reply", REPLIES)
def test_read_from_the_reply_as_metadata_reads_them(reply: str) -> None:
    msg = Msg(_client=None, subject="md.tick.3.AAPL", reply=reply)  # type: ignore[arg-type]
    assert stream_seq(msg) == msg.metadata.sequence.stream == 4711
    assert num_pending(msg) == msg.metadata.num_pending == 42
