"""A real 3-node nats-server cluster with JetStream on free loopback ports, for cluster tests.

Every node takes the instance's client credentials, and the routes between nodes have their
own (a node that does not know them cannot join). ``urls`` is the comma list clients use.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import nats

from stockctl import servercreds
from stockctl.instance import infra
from stockctl.instance.cluster import meta_leader, nats_node_config
from stockctl.wire.nats_urls import nats_options
from stockctl.wire.streams import STREAM_UNAVAILABLE
from tests.support.stack import Server, wait_for

HOST = "127.0.0.1"


@dataclass
class NatsCluster:
    nodes: list[Server]
    monitor_ports: list[int]
    credentials: servercreds.ServerCredentials

    @property
    def urls(self) -> str:
        """Every node's client URL, comma separated (what ``STOCKCTL_NATS_URL`` takes)."""
        return ",".join(self.credentials.nats_url(HOST, n.port) for n in self.nodes)

    def url(self, i: int) -> str:
        return self.credentials.nats_url(HOST, self.nodes[i].port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node(self, server_name: str) -> Server:
        """The node a stream's ``cluster.leader`` names (``n1`` is ``nats1``)."""
        return next(n for n in self.nodes if n.name == f"nats{server_name[1:]}")

    def stream_placement(self, stream: str, timeout: float = 15) -> tuple[str, list[tuple[str, bool]]]:
        """``stream``'s leader and its other replicas with whether each is current, as the cluster
        says; asked again for up to ``timeout`` while the stream is between leaders (a 503)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return asyncio.run(asyncio.wait_for(self._placement(stream), 15))
            except STREAM_UNAVAILABLE:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def consumer_peers(self, stream: str, consumer: str) -> int:
        """How many nodes hold ``consumer`` of ``stream``: its leader and its replicas."""

        async def ask() -> int:
            nc = await nats.connect(**nats_options(self.urls), connect_timeout=5, allow_reconnect=False)
            try:
                info = await nc.jetstream().consumer_info(stream, consumer)
            finally:
                await nc.close()
            return 1 + len(info.cluster.replicas or []) if info.cluster and info.cluster.leader else 0

        return asyncio.run(asyncio.wait_for(ask(), 15))

    def leader_other_than(self, stream: str, old: str, timeout: float = 30) -> str:
        """``stream``'s leader once it is not ``old`` (asked again while the stream has none)."""
        seen: list[object] = [None]

        def moved() -> str | None:
            try:
                leader = self.stream_placement(stream)[0]
            except (*STREAM_UNAVAILABLE, TimeoutError, AssertionError) as exc:  # between leaders
                seen[0] = exc
                return None
            seen[0] = leader
            return leader if leader and leader != old else None

        deadline = time.monotonic() + timeout
        while not (leader := moved()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{stream} still led by {old} (or by none) after {timeout}s: {seen[0]!r}")
            time.sleep(0.2)
        return leader

    async def _placement(self, stream: str) -> tuple[str, list[tuple[str, bool]]]:
        nc = await nats.connect(**nats_options(self.urls), connect_timeout=5, allow_reconnect=False)
        try:
            info = await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()
        assert info.cluster is not None, f"{stream} has no cluster info"
        return str(info.cluster.leader), [(str(r.name), bool(r.current)) for r in info.cluster.replicas or []]

    def wait_healthy(self, streams: Iterable[str], timeout: float = 60) -> None:
        """Every node up and every one of ``streams`` led, with all its replicas current."""

        seen: list[object] = ["nothing yet"]

        def healthy() -> bool:
            try:
                placements = [self.stream_placement(s) for s in streams]
            except Exception as exc:  # no leader yet, or a node still starting
                seen[0] = exc
                return False
            seen[0] = placements
            return all(leader and len(rs) == len(self.nodes) - 1 and all(c for _, c in rs) for leader, rs in placements)

        deadline = time.monotonic() + timeout
        while not healthy():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no stream of {list(streams)} led with all replicas current in {timeout}s: {seen[0]!r}"
                )
            time.sleep(0.5)


def start_nats_cluster(base: Path, size: int = 3) -> NatsCluster:
    """``size`` nats-server nodes routed to each other, each with JetStream in ``base/nI``."""
    base.mkdir(parents=True, exist_ok=True)
    creds = servercreds.load_credentials(base / "secrets")
    ports = [infra.free_port() for _ in range(size)]
    routes = [infra.free_port() for _ in range(size)]
    monitors = [infra.free_port() for _ in range(size)]
    nodes = []
    for i in range(size):
        store = base / f"n{i}"
        conf = nats_node_config(creds, base / "secrets" / f"n{i}.conf", f"n{i}", store, HOST, routes[i], routes)
        argv = [str(infra.nats_server_binary()), "--config", str(conf), "--addr", HOST, "--port", str(ports[i])]
        argv += ["--http_port", str(monitors[i])]
        nodes.append(Server(f"nats{i}", argv, ports[i], _ready(monitors[i]), base / f"n{i}.log"))
    _start_all(nodes)
    wait_for(lambda: all(meta_leader(HOST, p) for p in monitors), 30, what="a JetStream meta leader")
    return NatsCluster(nodes, monitors, creds)


def _ready(monitor_port: int) -> Callable[[], bool]:
    return lambda: infra.nats_ready(HOST, monitor_port)


def _start_all(nodes: list[Server]) -> None:
    """Start every node before waiting on any: a node's JetStream is healthy only with a quorum."""
    for node in nodes:
        with node.log.open("ab") as fh:
            node.proc = subprocess.Popen(node.argv, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL)
    for node in nodes:
        wait_for(node.ready, 30, what=f"{node.name} ready")
