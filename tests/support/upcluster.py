"""The servers of a running ``stockctl up --cluster`` as the fault tests see them.

Every function takes the status rows (``stockctl status --json`` by component, as
:meth:`tests.support.fault_suite.Stack.status` returns them) for the nodes' addresses, and
asks the servers themselves, never the supervisor, who leads what:

* NATS: :func:`streams` lists every JetStream stream with its leader (a ``server_name``,
  which ``up --cluster`` makes the component's name, ``nats-1..3``) and whether each other
  replica is current (``$JS.API.STREAM.LIST``, through any node not in ``avoid``);
  :func:`stream_leader` is one stream's leader; :func:`nats_whole` says whether every stream
  is led with all its replicas current.
* Valkey: :func:`slot_owner` is the component (``redis-1..6``) serving a key's slot, once
  every answering node not in ``avoid`` agrees and says ``cluster_state:ok``;
  :func:`valkey_whole` says whether all six nodes answer ``cluster_state:ok`` and each of
  the three primaries has a linked replica.

Each returns None (and keeps what it saw in :data:`last_seen`, for a timeout's message)
rather than raise while a node is down, frozen or being elected: callers poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

import nats
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from stockctl.instance.valkeycluster import NodeLine, parse_cluster_nodes
from stockctl.wire import names
from stockctl.wire.nats_urls import nats_options, nats_servers

Rows = dict[str, dict[str, Any]]
NATS_NODES = tuple(f"nats-{i}" for i in (1, 2, 3))
VALKEY_NODES = tuple(f"redis-{i}" for i in range(1, 7))
REQUIRED_STREAMS = frozenset(
    {
        names.ORDER_STREAM,
        names.EVENT_STREAM,
        names.TICK_STREAM,
        f"KV_{names.LEASES_BUCKET}",
        f"KV_{names.MATCHING_LEASES_BUCKET}",
    }
)
"""What ``up --cluster`` keeps in JetStream: the three streams and the two lease buckets."""

last_seen: dict[str, object] = {}


def port(rows: Rows, name: str) -> int:
    """A server's client port, from its status address (``host:port``)."""
    return int(str(rows[name]["address"]).rsplit(":", 1)[1])


# --- NATS -------------------------------------------------------------------------------------


Placement = tuple[str, list[tuple[str, bool]]]


async def _list_streams(servers: list[str]) -> dict[str, Placement]:
    nc = await nats.connect(**nats_options(",".join(servers)), connect_timeout=2, allow_reconnect=False)
    try:
        infos = await nc.jetstream(timeout=3).streams_info()
    finally:
        await nc.close()
    out: dict[str, Placement] = {}
    for info in infos:
        cluster = info.cluster
        leader = str(cluster.leader or "") if cluster else ""
        replicas = [(str(r.name), bool(r.current)) for r in (cluster.replicas or [])] if cluster else []
        out[str(info.config.name)] = (leader, replicas)
    return out


def streams(nats_url: str, rows: Rows, avoid: Iterable[str] = ()) -> dict[str, Placement] | None:
    """Every stream's leader and other replicas (name, current), asked through the nodes not in
    ``avoid``; None if no answer (a node frozen, a meta leader being elected)."""
    skip = {port(rows, n) for n in avoid}
    servers = [s for s in nats_servers(nats_url) if urlparse(s).port not in skip]
    try:
        found = asyncio.run(asyncio.wait_for(_list_streams(servers), 8))
    except Exception as exc:  # no responders, a timeout, a node refusing: ask again
        last_seen["streams"] = repr(exc)
        return None
    last_seen["streams"] = found
    return found


def stream_leader(nats_url: str, rows: Rows, stream: str, avoid: Iterable[str] = ()) -> str | None:
    """The node leading ``stream`` (its component name), or None while it has none."""
    found = streams(nats_url, rows, avoid)
    leader = (found or {}).get(stream, ("", []))[0]
    return leader if leader in NATS_NODES else None


def nats_whole(nats_url: str, rows: Rows) -> bool:
    """Every stream (the required ones at least) led, with its two other replicas current."""
    found = streams(nats_url, rows)
    if not found or not set(found) >= REQUIRED_STREAMS:
        return False
    return all(
        leader in NATS_NODES and len(replicas) == len(NATS_NODES) - 1 and all(c for _, c in replicas)
        for leader, replicas in found.values()
    )


# --- Valkey -----------------------------------------------------------------------------------


def _ask(rows: Rows, name: str, password: str, *command: str) -> str | None:
    host = str(rows[name]["address"]).rsplit(":", 1)[0]
    client = redis.Redis(
        host,
        port(rows, name),
        password=password,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        return str(client.execute_command(*command))
    except redis.RedisError:
        return None
    finally:
        client.close()


def _state(rows: Rows, name: str, password: str) -> str:
    info = _ask(rows, name, password, "CLUSTER", "INFO") or ""
    return next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("cluster_state:")), "none")


def _view(rows: Rows, name: str, password: str) -> list[NodeLine]:
    text = _ask(rows, name, password, "CLUSTER", "NODES")
    return parse_cluster_nodes(text) if text else []


def _by_port(rows: Rows) -> dict[int, str]:
    return {port(rows, n): n for n in VALKEY_NODES}


def slot_owner(rows: Rows, password: str, key: str, avoid: Iterable[str] = ()) -> str | None:
    """The node serving ``key``'s slot, once every node not in ``avoid`` answers, agrees on it
    and says ``cluster_state:ok``; None before that."""
    slot = key_slot(key.encode())
    skip = set(avoid)
    serving: dict[str, str | None] = {}
    states: dict[str, str] = {}
    for name in VALKEY_NODES:
        if name in skip:
            continue
        states[name] = _state(rows, name, password)
        line = next(
            (
                ln
                for ln in _view(rows, name, password)
                if ln.is_primary and not ln.failed and any(lo <= slot <= hi for lo, hi in ln.slots)
            ),
            None,
        )
        serving[name] = _by_port(rows).get(line.port) if line else None
    last_seen["slot_owner"] = {"slot": slot, "serving": serving, "cluster_state": states}
    owners = set(serving.values())
    if len(owners) != 1 or None in owners or any(s != "ok" for s in states.values()):
        return None
    return owners.pop()


def valkey_whole(rows: Rows, password: str) -> bool:
    """All six nodes say ``cluster_state:ok``, and each of the 3 primaries has a linked replica."""
    states = {n: _state(rows, n, password) for n in VALKEY_NODES}
    lines = _view(rows, VALKEY_NODES[0], password)
    primaries = [ln for ln in lines if ln.is_primary and ln.slots and not ln.failed]
    linked = {ln.primary_id for ln in lines if not ln.is_primary and ln.link_connected and not ln.failed}
    last_seen["valkey"] = {"cluster_state": states, "primaries": [p.port for p in primaries]}
    if any(s != "ok" for s in states.values()) or len(lines) != len(VALKEY_NODES):
        return False
    return len(primaries) == 3 and all(p.node_id in linked for p in primaries)
