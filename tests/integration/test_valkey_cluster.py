"""A real Valkey Cluster formed by stockctl.instance.valkeycluster (no valkey-cli): 3 primaries
with a replica each, every slot served, passwords required; a primary killed or paused for
longer than the node timeout gives way to its replica with the data it had acknowledged,
and a paused one comes back as a replica; forming a formed cluster changes nothing."""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from stockctl.instance import infra
from stockctl.instance.valkeycluster import SLOTS, ClusterFormError, form_cluster
from tests.support.stack import wait_for
from tests.support.valkeycluster import HOST, ValkeyCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T = TypeVar("T")


def keys_on_every_primary(cluster: ValkeyCluster) -> dict[int, str]:
    """A key served by each primary: primary port -> key."""
    found: dict[int, str] = {}
    for i in range(100):
        found.setdefault(cluster.primary_of(f"key{i}").port, f"key{i}")
        if len(found) == cluster.primaries:
            return found
    raise AssertionError(f"100 keys land on {len(found)} primaries only")


def soon(call: Callable[[], T], timeout: float = 5) -> T:
    """``call()``, asked again while the cluster client is still finding the new primary."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError, RedisClusterException, redis.ResponseError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_six_nodes_form_three_primaries_with_a_replica_each_serving_every_slot(valkey_cluster: ValkeyCluster) -> None:
    cluster = valkey_cluster

    # Assert: every node sees the same 3 primaries, together serving each slot once, each with one replica.
    for node in cluster.nodes:
        lines = cluster.view(node)
        primaries = [ln for ln in lines if ln.is_primary]
        replicas = [ln for ln in lines if "slave" in ln.flags]
        assert len(lines) == 6 and len(primaries) == 3 and len(replicas) == 3, lines
        served = sorted(slot for ln in primaries for lo, hi in ln.slots for slot in range(lo, hi + 1))
        assert served == list(range(SLOTS))
        assert sorted(ln.primary_id for ln in replicas) == sorted(ln.node_id for ln in primaries)
        assert all(ln.link_connected and not ln.failed for ln in lines), lines
        info = str(cluster.client(node).execute_command("CLUSTER", "INFO"))
        assert "cluster_state:ok" in info and f"cluster_slots_ok:{SLOTS}" in info and "cluster_size:3" in info
    for primary in cluster.current_primaries():
        assert len(cluster.replicas_of(primary)) == 1

    # Act + Assert: the cluster client writes keys that land on every primary, and reads them back.
    client = cluster.cluster_client()
    on_primary = keys_on_every_primary(cluster)
    for port, key in on_primary.items():
        assert client.set(key, f"on {port}")
    for port, key in on_primary.items():
        assert client.get(key) == f"on {port}"
        assert cluster.client(cluster.node(port)).get(key) == f"on {port}"  # there, not elsewhere
    cluster.flushall()
    assert [client.get(key) for key in on_primary.values()] == [None] * len(on_primary)
    client.close()

    # Assert: no one is let in without the password, and it is on no command line, only in a 0600 file.
    once = Retry(NoBackoff(), 0)  # redis-py retries an AuthenticationError (a ConnectionError) with a backoff
    with pytest.raises(redis.AuthenticationError, match="invalid username-password"):
        redis.Redis(HOST, cluster.nodes[0].port, password="wrong", retry=once).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(HOST, cluster.nodes[0].port, retry=once).get("key0")
    with pytest.raises(RedisClusterException, match="invalid username-password"):
        RedisCluster(startup_nodes=[ClusterNode(HOST, cluster.nodes[0].port)], password="wrong").get("key0")
    password = cluster.credentials.redis_password
    for node in cluster.nodes:
        assert node.proc is not None
        assert password not in Path(f"/proc/{node.proc.pid}/cmdline").read_text()
    conf = Path(cluster.nodes[0].argv[1])  # the config file comes first
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert f'masterauth "{password}"' in conf.read_text()
    ports = ",".join(f"{HOST}:{n.port}" for n in cluster.nodes)
    assert cluster.url == f"redis+cluster://:{password}@{ports}"
    assert cluster.node_url(2) == f"redis://:{password}@{HOST}:{cluster.nodes[2].port}/0"


def test_a_killed_primary_gives_way_to_its_replica_with_the_writes_it_had_replicated(
    valkey_cluster: ValkeyCluster,
) -> None:
    cluster = valkey_cluster
    key = "order:1"
    primary = cluster.primary_of(key)
    (replica,) = cluster.replicas_of(primary)
    with cluster.client(primary) as conn:
        conn.set(key, "before")
        assert conn.execute_command("WAIT", 1, 5000) == 1  # the replica has it

    # Act: kill -9 the primary.
    primary.kill()
    started = time.monotonic()
    promoted = cluster.wait_promoted(primary, key, timeout=15)
    elapsed = time.monotonic() - started
    print(f"valkey failover after kill -9: {elapsed:.2f}s")

    # Assert: its replica serves the slot, with the write it had acknowledged; new writes go there.
    assert promoted.port == replica.port and elapsed < 15
    client = cluster.cluster_client()
    assert soon(lambda: client.get(key)) == "before"
    assert soon(lambda: client.set(f"{{{key}}}:after", "after"))
    assert client.get(f"{{{key}}}:after") == "after"
    assert cluster.primary_of(f"{{{key}}}:after", asking=[promoted]).port == promoted.port
    client.close()


def test_a_paused_primary_is_failed_over_and_rejoins_as_a_replica_losing_nothing_written_since(
    valkey_cluster: ValkeyCluster,
) -> None:
    cluster = valkey_cluster
    key = "order:2"
    primary = cluster.primary_of(key)
    (replica,) = cluster.replicas_of(primary)
    assert primary.proc is not None

    # Act: freeze the primary for longer than the node timeout.
    os.kill(primary.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        promoted = cluster.wait_promoted(primary, key, timeout=15)
        elapsed = time.monotonic() - started
        print(f"valkey failover after SIGSTOP: {elapsed:.2f}s")
        assert promoted.port == replica.port and elapsed > cluster.node_timeout_ms / 1000
        client = cluster.cluster_client()
        written = {f"{{{key}}}:{i}": str(i) for i in range(50)}
        for k, v in written.items():
            assert soon(lambda k=k, v=v: client.set(k, v))
    finally:
        os.kill(primary.proc.pid, signal.SIGCONT)

    # Assert: the old primary comes back as a replica of the new one, and has what was written meanwhile.
    promoted_id = next(ln.node_id for ln in cluster.view(promoted) if "myself" in ln.flags)

    def rejoined() -> bool:
        """The old primary says it replicates the new one, with its link up, and the new one agrees."""
        seen_by = [next((ln for ln in cluster.view(n) if ln.port == primary.port), None) for n in (primary, promoted)]
        if not all(ln and "slave" in ln.flags and not ln.failed and ln.primary_id == promoted_id for ln in seen_by):
            return False
        with cluster.client(primary) as old:
            return old.info("replication").get("master_link_status") == "up"

    wait_for(rejoined, 20, what=f"{primary.name} back as a replica of {promoted.name}")
    assert [n.port for n in cluster.replicas_of(promoted)] == [primary.port]
    with cluster.client(promoted) as conn:  # a write after all of them, and the old primary has it
        conn.set(f"{{{key}}}:last", "x")
        assert conn.execute_command("WAIT", 1, 5000) == 1
    for k, v in written.items():
        assert client.get(k) == v
    with cluster.client(primary) as old:
        old.execute_command("READONLY")
        assert old.mget(list(written)) == list(written.values())
    client.close()


def test_forming_a_formed_cluster_changes_nothing(valkey_cluster: ValkeyCluster) -> None:
    cluster = valkey_cluster
    ports = [n.port for n in cluster.nodes]
    client = cluster.cluster_client()
    client.set("kept", "yes")

    def layout() -> list[tuple[int, str, bool, str, tuple[tuple[int, int], ...]]]:
        lines = cluster.view(cluster.nodes[0])
        return sorted((ln.port, ln.node_id, ln.is_primary, ln.primary_id, ln.slots) for ln in lines)

    def epoch() -> str:
        info = str(cluster.client(cluster.nodes[0]).execute_command("CLUSTER", "INFO"))
        return next(line for line in info.splitlines() if line.startswith("cluster_current_epoch:"))

    before, epoch_before = layout(), epoch()

    # Act: form it again, twice.
    started = time.monotonic()
    form_cluster(HOST, ports, cluster.credentials.redis_password, replicas=1)
    form_cluster(HOST, ports, cluster.credentials.redis_password, replicas=1)

    # Assert: at once, the same nodes in the same roles with the same slots, and the data kept.
    assert time.monotonic() - started < 2
    assert layout() == before and epoch() == epoch_before
    assert client.get("kept") == "yes"
    client.close()

    # Assert: a node count that cannot be split, or a node that does not answer, is an error naming it.
    with pytest.raises(ClusterFormError, match="5 nodes with 1 replicas"):
        form_cluster(HOST, ports[:5], cluster.credentials.redis_password, replicas=1)
    dead = infra.free_port()
    with pytest.raises(ClusterFormError, match=f"{HOST}:{dead}"):
        form_cluster(HOST, [*ports[:5], dead], cluster.credentials.redis_password, replicas=1, timeout=2)
