"""A real Valkey Cluster (3 primaries, 3 replicas) on free loopback ports, for cluster tests.

The nodes are valkey-server processes started as ``stockctl.instance.valkeycluster`` says,
with the instance's credentials, and formed by its ``form_cluster`` (no valkey-cli). The
cluster fails over by itself: a primary killed or paused for longer than the node timeout
gives way to its replica. ``url`` is the ``redis+cluster://`` URL of every node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from stockctl import servercreds
from stockctl.instance import infra
from stockctl.instance.valkeycluster import (
    DEFAULT_NODE_TIMEOUT_MS,
    NodeLine,
    cluster_argv,
    form_cluster,
    parse_cluster_nodes,
)
from tests.support.stack import Server, wait_for

HOST = "127.0.0.1"


@dataclass
class ValkeyCluster:
    nodes: list[Server]
    credentials: servercreds.ServerCredentials
    primaries: int
    replicas: int
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS

    @property
    def url(self) -> str:
        """Every node, as ``redis+cluster://:PASSWORD@host:p1,host:p2,...``."""
        return self.credentials.redis_cluster_url(HOST, [n.port for n in self.nodes])

    def node_url(self, i: int) -> str:
        """One node on its own (plain ``redis://``, db 0)."""
        return self.credentials.redis_url(HOST, self.nodes[i].port)

    def client(self, node: Server, timeout: float = 1) -> redis.Redis:
        """A plain connection to one node: a short timeout and no retries (the node may be paused)."""
        return redis.Redis(
            HOST,
            node.port,
            password=self.credentials.redis_password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    def cluster_client(self) -> RedisCluster:
        """redis-py's cluster client, started from every node."""
        return RedisCluster(
            startup_nodes=[ClusterNode(HOST, n.port) for n in self.nodes],
            password=self.credentials.redis_password,
            decode_responses=True,
            socket_timeout=1,
            socket_connect_timeout=1,
        )

    def alive(self, exclude: Iterable[Server] = ()) -> list[Server]:
        """The nodes whose process runs, but for ``exclude`` (a paused node runs too)."""
        skip = {n.port for n in exclude}
        return [n for n in self.nodes if n.port not in skip and n.proc is not None and n.proc.poll() is None]

    def view(self, node: Server) -> list[NodeLine]:
        """``CLUSTER NODES`` as ``node`` sees it ([] if it does not answer)."""
        with self.client(node) as conn:
            try:
                return parse_cluster_nodes(str(conn.execute_command("CLUSTER", "NODES")))
            except redis.RedisError:
                return []

    def node(self, port: int) -> Server:
        return next(n for n in self.nodes if n.port == port)

    def keyslot(self, key: str, asking: Iterable[Server] | None = None) -> int:
        for node in asking if asking is not None else self.alive():
            with self.client(node) as conn, contextlib.suppress(redis.RedisError):
                return int(conn.execute_command("CLUSTER", "KEYSLOT", key))
        raise AssertionError("no valkey node answers CLUSTER KEYSLOT")

    def primary_of(self, key: str, asking: Iterable[Server] | None = None) -> Server:
        """The node serving ``key``'s slot, as the first of ``asking`` (default: any live node) that
        answers sees it."""
        asking = list(asking) if asking is not None else self.alive()
        slot = self.keyslot(key, asking)
        for node in asking:
            found = _serving(self.view(node), slot)
            if found:
                return self.node(found.port)
        raise AssertionError(f"no live valkey node knows who serves slot {slot} ({key!r})")

    def replicas_of(self, primary: Server) -> list[Server]:
        """The nodes replicating ``primary``, as ``primary`` itself sees it."""
        lines = self.view(primary)
        me = next((line for line in lines if line.port == primary.port), None)
        assert me is not None, f"valkey node {primary.port} does not answer CLUSTER NODES"
        return [self.node(line.port) for line in lines if line.primary_id == me.node_id]

    def wait_promoted(self, old_primary: Server, key: str, timeout: float = 30) -> Server:
        """The node serving ``key``'s slot once every other live node agrees it is not
        ``old_primary`` and says ``cluster_state:ok``."""
        slot = self.keyslot(key, self.alive(exclude=[old_primary]))
        seen: list[object] = ["nothing yet"]

        def promoted() -> Server | None:
            survivors = self.alive(exclude=[old_primary])
            serving = {}
            for node in survivors:
                found = _serving(self.view(node), slot)
                serving[node.port] = found.port if found else None
            states = {n.port: self.cluster_state(n) for n in survivors}
            seen[0] = {"serving": serving, "cluster_state": states}
            ports = set(serving.values())
            if len(ports) != 1 or None in ports or old_primary.port in ports:
                return None
            return self.node(ports.pop()) if all(s == "ok" for s in states.values()) else None

        deadline = time.monotonic() + timeout
        while not (new := promoted()):
            if time.monotonic() > deadline:
                raise AssertionError(f"slot {slot} not failed over from {old_primary.port} in {timeout}s: {seen[0]}")
            time.sleep(0.1)
        return new

    def cluster_state(self, node: Server) -> str:
        with self.client(node) as conn:
            try:
                info = str(conn.execute_command("CLUSTER", "INFO"))
            except redis.RedisError as exc:
                return f"{exc.__class__.__name__}"
        return next((line.split(":", 1)[1] for line in info.splitlines() if line.startswith("cluster_state:")), "?")

    def current_primaries(self) -> list[Server]:
        lines = self.view(self.alive()[0])
        return [self.node(line.port) for line in lines if line.is_primary and line.slots and not line.failed]

    def flushall(self) -> None:
        """FLUSHALL on every primary (the replicas follow)."""
        for node in self.current_primaries():
            with self.client(node, timeout=5) as conn:
                conn.flushall()

    def form(self, timeout: float = 30) -> None:
        form_cluster(HOST, [n.port for n in self.nodes], self.credentials.redis_password, self.replicas, timeout)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                os.kill(node.proc.pid, signal.SIGCONT)  # a paused node takes no SIGTERM
            node.stop()


def _serving(lines: list[NodeLine], slot: int) -> NodeLine | None:
    return next(
        (ln for ln in lines if ln.is_primary and not ln.failed and any(lo <= slot <= hi for lo, hi in ln.slots)), None
    )


def start_valkey_cluster(
    base: Path, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS
) -> ValkeyCluster:
    """``primaries * (1 + replicas)`` valkey-server nodes in ``base/vI``, formed into one cluster."""
    base.mkdir(parents=True, exist_ok=True)
    creds = servercreds.load_credentials(base / "secrets")
    conf = creds.write_redis_config(base / "secrets" / "valkey-cluster.conf", cluster=True)
    nodes = []
    for i in range(primaries * (1 + replicas)):
        port, bus_port = infra.free_port(), infra.free_port()
        data = base / f"v{i}"
        data.mkdir(exist_ok=True)
        argv = cluster_argv(HOST, port, data, conf, node_timeout_ms, bus_port)
        ready = _ready(port, creds.redis_password)
        nodes.append(Server(f"valkey{i}", argv, port, ready, base / f"v{i}.log"))
    cluster = ValkeyCluster(nodes, creds, primaries, replicas, node_timeout_ms)
    try:
        for node in nodes:  # start them all before waiting on any
            with node.log.open("ab") as fh:
                node.proc = subprocess.Popen(node.argv, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL)
        for node in nodes:
            wait_for(node.ready, 20, what=f"{node.name} ready")
        cluster.form()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _ready(port: int, password: str) -> Callable[[], bool]:
    return lambda: infra.redis_ready(HOST, port, password)
