"""Fault injection on a Valkey Cluster (issue #12, fault c): a primary killed (-9) and frozen
(SIGSTOP for 15 s), under the fault suite's steady load.

A real cluster of 3 primaries and 3 replicas (node timeout 2 s) runs for the module, and
``stockctl up --redis-url redis+cluster://...`` runs every daemon against it, with its own
embedded nats-server. Each test fails the primary that holds either a symbol's prices (the
processor's writes) or a trader's views (matching's writes), and measures the recovery from
the fault: an order acknowledged and a fresh quote delivered over the WebSocket, each
attempted after it. Valkey promotes the replica by itself; a killed node is started again
and comes back as a replica, a frozen one is resumed on a timer and does the same. Then the
test waits until every primary has a linked replica again, so the next fault starts from a
whole cluster.

After each fault the checks of ``tests/support/fault_suite.py`` run: no acknowledged order
lost, no fill or trade duplicated in events or views, balances equal the replay and are
conserved, price history with no gap and no duplicate. The summary table is printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stockctl.wire import names
from tests.support.fault_suite import (
    SERVER_PAUSE_S,
    SYMBOLS,
    USERS,
    Stack,
    assert_survived,
    check_and_record,
    fail_node,
    pause_load_after,
    recover,
    running_stack,
    start_load,
)
from tests.support.stack import wait_for
from tests.support.valkeycluster import ValkeyCluster, start_valkey_cluster

pytestmark = pytest.mark.faults

PAUSE_S = SERVER_PAUSE_S


@dataclass(frozen=True)
class PrimaryFault:
    id: str
    label: str
    key: str  # the primary serving this key's slot fails
    action: str  # "kill" (SIGKILL, then started again) or "pause" (SIGSTOP for PAUSE_S, then SIGCONT)


QUOTES, VIEWS = names.quote_key(SYMBOLS[0]), names.fills_key(USERS[0])
FAULTS = [
    PrimaryFault("kill-quote-primary", f"kill -9 the Valkey primary of {SYMBOLS[0]}", QUOTES, "kill"),
    PrimaryFault("kill-views-primary", "kill -9 the Valkey primary of a trader's fills", VIEWS, "kill"),
    PrimaryFault("pause-quote-primary", f"SIGSTOP {PAUSE_S:.0f}s Valkey primary of {SYMBOLS[0]}", QUOTES, "pause"),
    PrimaryFault("pause-views-primary", f"SIGSTOP {PAUSE_S:.0f}s Valkey primary of a trader's fills", VIEWS, "pause"),
]


@dataclass
class ClusterStack:
    st: Stack
    cluster: ValkeyCluster


def wait_whole(cluster: ValkeyCluster, timeout: float = 60) -> None:
    """Every node up and ``cluster_state:ok``, and each of the 3 primaries with a linked replica."""

    def whole() -> bool:
        if any(n.proc is None or n.proc.poll() is not None for n in cluster.nodes):
            return False
        if any(cluster.cluster_state(n) != "ok" for n in cluster.nodes):
            return False
        lines = cluster.view(cluster.nodes[0])
        primaries = [ln for ln in lines if ln.is_primary and ln.slots and not ln.failed]
        linked = {ln.primary_id for ln in lines if not ln.is_primary and ln.link_connected and not ln.failed}
        return len(primaries) == 3 and all(p.node_id in linked for p in primaries)

    wait_for(whole, timeout, interval=0.2, what="a whole Valkey cluster (3 primaries, each with a replica)")


@pytest.fixture(scope="module")
def cstack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    base = tmp_path_factory.mktemp("redis-cluster-faults")
    cluster = start_valkey_cluster(base / "valkey")
    try:
        up = ("--redis-url", cluster.url)
        with running_stack(request, base, "Valkey cluster fault summary", up) as st:
            wait_whole(cluster)
            yield ClusterStack(st, cluster)
    finally:
        cluster.stop()


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_a_failed_valkey_primary_loses_nothing(cstack: ClusterStack, fault: PrimaryFault) -> None:
    st, cluster = cstack.st, cstack.cluster

    # Arrange: a whole cluster, the load flowing, and the primary that holds the key
    wait_whole(cluster)
    start_load(st)
    node = cluster.primary_of(fault.key)
    logs_at = st.log_sizes()

    # Act: fail it. A frozen node is resumed on a timer while recovery is measured; a killed
    # one is started again once the recovery is measured (or has failed).
    t_fault = time.time()
    resume = fail_node(node, fault.action, PAUSE_S)
    try:
        recovery, done = recover(st, fault.label, t_fault, t_fault)
        promoted = cluster.wait_promoted(node, fault.key, timeout=30)
    finally:
        if resume is not None:
            resume.join()
        else:
            node.start()
    wait_whole(cluster)
    pause_load_after(st, max(done.values()))

    # Assert (the row goes into the summary first, so a failing fault is in the table too)
    row = {"restarts": "-", "leader": f"{node.port} -> {promoted.port}"}
    v, _ = check_and_record(st, fault.label, recovery, t_fault, done, logs_at, **row)

    assert promoted.port != node.port
    assert_survived(st, v, t_fault, recovery)
