"""Streams on a real 3-node NATS cluster: STOCKCTL_STREAM_REPLICAS, never lowered, and a
stream that keeps taking writes when the node leading it is killed."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import nats
import pytest

from stockctl.runtime.connections import connect_nats
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.nats_urls import nats_servers
from stockctl.wire.streams import ensure_exchange_streams, ensure_tick_stream
from tests.support.natscluster import start_nats_cluster

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_streams_take_the_configured_replicas_never_lower_them_and_survive_their_leader(tmp_path: Path) -> None:
    cluster = start_nats_cluster(tmp_path)
    try:
        asyncio.run(asyncio.wait_for(_scenario(cluster, tmp_path), 90))
    finally:
        cluster.stop()


async def _scenario(cluster, tmp_path: Path) -> None:
    r3 = Settings(home=tmp_path / "home", stream_replicas=3)
    r1 = Settings(home=tmp_path / "home")
    nc = await nats.connect(servers=nats_servers(cluster.urls))
    js = nc.jetstream()
    try:
        # Arrange: every stream at R3, as `up --cluster` asks.
        await ensure_exchange_streams(js, r3.stream_replicas)
        await ensure_tick_stream(js, r3)

        # Act: a daemon started with the default (1) brings the streams "in line".
        await ensure_exchange_streams(js, r1.stream_replicas)
        await ensure_tick_stream(js, r1)

        # Assert: still 3 replicas each, all current.
        for stream in (names.ORDER_STREAM, names.EVENT_STREAM, names.TICK_STREAM):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3, (stream, info.config.num_replicas)
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2, info.cluster

        # Act: kill -9 the node that leads EX_ORDERS, then keep publishing.
        leader = (await js.stream_info(names.ORDER_STREAM)).cluster.leader
        victim = next(n for n in cluster.nodes if n.name == f"nats{leader[1:]}")
        victim.kill()
        subject = names.order_subject("TATA_INR")
        started, acked = time.monotonic(), None
        while acked is None and time.monotonic() - started < 20:
            try:
                acked = await js.publish(subject, b"{}", timeout=1, headers={"Nats-Msg-Id": "after-kill"})
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.2)
        recovery = time.monotonic() - started

        # Assert: a new leader took the write within the 10 s target, on another node.
        assert acked is not None and acked.stream == names.ORDER_STREAM, "no ack within 20 s of the leader's death"
        assert recovery < 10, f"EX_ORDERS took {recovery:.1f} s to take a write after its leader died"
        new_leader = (await js.stream_info(names.ORDER_STREAM)).cluster.leader
        assert new_leader != leader
    finally:
        await nc.close()


@pytest.mark.timeout(120)
def test_a_daemon_given_one_node_fails_over_to_the_nodes_the_cluster_announces(tmp_path: Path) -> None:
    cluster = start_nats_cluster(tmp_path)
    try:
        asyncio.run(asyncio.wait_for(_failover(cluster, tmp_path), 90))
    finally:
        cluster.stop()


async def _failover(cluster, tmp_path: Path) -> None:
    # Arrange: a daemon's connection, told of node 0 alone; the others are known only by gossip.
    settings = Settings(home=tmp_path / "home", nats_url=cluster.url(0))
    stop = asyncio.Event()
    nc = await connect_nats(settings, "failover-test", stop, logging.getLogger("failover-test"))
    try:
        assert nc.connected_url is not None and nc.connected_url.port == cluster.nodes[0].port
        others = {n.port for n in cluster.nodes[1:]}
        assert others <= {u.port for u in nc.discovered_servers}, nc.discovered_servers

        # Act: node 0 dies.
        cluster.nodes[0].kill()

        # Assert: the connection moves to an announced node, which accepts the instance's
        # credentials (nats-py sent a URL's userinfo to that URL's server only: refused forever).
        sub = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if nc.is_connected and nc.connected_url is not None and nc.connected_url.port != cluster.nodes[0].port:
                sub = await nc.subscribe("failover.test")
                break
            await asyncio.sleep(0.1)
        assert sub is not None, f"not reconnected to another node within 20 s (last error {nc.last_error!r})"
        await nc.publish("failover.test", b"ok")
        assert (await sub.next_msg(timeout=5)).data == b"ok"
    finally:
        stop.set()
        await nc.close()
