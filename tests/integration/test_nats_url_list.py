"""``STOCKCTL_NATS_URL`` as a comma list: every daemon's connection tries each server in turn
(a first server that is down does not stop a start), on a real nats-server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import nats
import pytest

from stockctl.instance.infra import free_port
from stockctl.runtime.connections import connect_nats
from tests.support.stack import Servers, make_settings


async def test_a_list_whose_first_server_is_down_connects_to_the_next(clean: Servers, tmp_path: Path) -> None:
    dead = free_port()
    creds = clean.credentials
    url = f"nats://{creds.nats_user}:{creds.nats_password}@127.0.0.1:{dead},127.0.0.1:{clean.nats.port}"
    with pytest.raises(Exception, match="invalid connect url"):
        await nats.connect(url, allow_reconnect=False, connect_timeout=1)  # what nats-py does with the string

    settings = make_settings(clean, tmp_path, nats_url=url)
    stop = asyncio.Event()
    nc = await asyncio.wait_for(connect_nats(settings, "list-test", stop, logging.getLogger("t")), 20)
    try:
        assert nc.connected_url is not None and nc.connected_url.port == clean.nats.port
        sub = await nc.subscribe("list.test")
        await nc.publish("list.test", b"ok")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"ok"
    finally:
        await nc.close()
