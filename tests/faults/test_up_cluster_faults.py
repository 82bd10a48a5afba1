"""Fault injection on ``stockctl up --cluster`` (issue #12): its roles (faults d, e and f) and
its server nodes (faults a, b and c).

``up --cluster`` runs 3 NATS nodes, a Valkey Cluster of 3+3 and two of each scalable daemon;
the fault suite's steady load runs against it, its clients knowing both gateways. Each test
fails one process, with kill -9 (its supervisor starts it again: servers and daemons alike)
or SIGSTOP for 15 s (resumed on a timer), default leases:

* (d) the active matching daemon: a frozen one's lease lapses (3 s) and the standby leads;
  resumed, the old one is refused, exits 1 and comes back as the standby;
* (e) the processor that owns ``AAPL``'s partition: a frozen one's leases lapse (5 s) and the
  other processor takes its partitions, resuming each symbol from Redis;
* (f) the gateway the load's clients use (the busier one in ``status``): they move to the other;
* (a) the NATS node leading ``EX_ORDERS`` and (b) the one leading ``MD_TICKS`` (one stream:
  its subjects are partitioned, ``md.tick.<N>.<SYM>``, so it holds ``AAPL``'s ticks), found
  with ``$JS.API.STREAM.LIST`` (``cluster.leader`` is the node's component name), its pid
  from ``status``: for a frozen one, the other two must name another leader (asked of them alone);
* (c) the Valkey primary serving ``AAPL``'s quote slot: a frozen one's replica must take over
  (the cluster's node timeout, 2 s, then a vote; the other five must agree); a killed one is
  back from its AOF before that timeout, so it usually keeps its slots.

A killed daemon is back within about a second and, being the same member, takes its own
lease straight back. After each fault the checks of ``tests/support/fault_suite.py`` run (no
acknowledged order lost, no fill or trade duplicated in events or views, balances equal the
replay and are conserved, price history with no gap and no duplicate), and the instance is
whole again: one matching daemon active and one standing by, the partitions split 4/4, and,
after a server fault (checked before it too), every stream led with its replicas current and
every Valkey primary with a linked replica (``tests/support/upcluster.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from stockctl.wire import names
from tests.support import upcluster
from tests.support.fault_suite import (
    SERVER_PAUSE_S,
    SYMBOLS,
    Stack,
    assert_survived,
    check_and_record,
    fail_pid,
    pause_load_after,
    recover,
    running_stack,
    start_load,
)
from tests.support.faults import poll
from tests.support.stack import wait_for

pytestmark = pytest.mark.faults


@dataclass(frozen=True)
class RoleFault:
    id: str
    role: str  # "matching", "processor" or "gateway"
    action: str  # "kill" or "pause"

    @property
    def label(self) -> str:
        what = {
            "matching": "the active matching daemon",
            "processor": f"the processor owning {SYMBOLS[0]}",
            "gateway": "the gateway in use",
        }[self.role]
        return f"kill -9 {what}" if self.action == "kill" else f"SIGSTOP {SERVER_PAUSE_S:.0f}s {what}"


FAULTS = [RoleFault(f"{a}-{r}", r, a) for r in ("matching", "processor", "gateway") for a in ("kill", "pause")]


def _rows(st: Stack) -> dict[str, dict[str, Any]]:
    return st.status()


def _whole(st: Stack) -> dict[str, dict[str, Any]] | None:
    """The status rows once every component runs, one matching daemon leads and one stands
    by, and the two processors hold 4 partitions each."""
    rows = _rows(st)
    if any(r["state"] != "running" for r in rows.values()):
        return None
    roles = sorted(str((rows[f"matching-{n}"].get("role") or {}).get("role")) for n in (1, 2))
    held = [len((rows[f"processor-{n}"].get("partitions") or {}).get("partitions") or []) for n in (1, 2)]
    return rows if roles == ["active", "standby"] and held == [4, 4] else None


def _target(rows: dict[str, dict[str, Any]], role: str) -> str:
    if role == "matching":
        return next(n for n in ("matching-1", "matching-2") if (rows[n].get("role") or {}).get("role") == "active")
    if role == "processor":
        partition = names.partition_of(SYMBOLS[0], 8)
        return next(
            n
            for n in ("processor-1", "processor-2")
            if partition in ((rows[n].get("partitions") or {}).get("partitions") or [])
        )
    # The gateway the load's clients use: they stay on the one that answered last.
    return max(("gateway-1", "gateway-2"), key=lambda n: (rows[n].get("rates") or {}).get("requests", 0))


@pytest.fixture(scope="module")
def st(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("up-cluster-faults")
    with running_stack(request, base, "up --cluster fault summary", cluster=True) as stack:
        wait_for(lambda: _whole(stack), 60, interval=0.5, what="a whole cluster instance")
        yield stack


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_a_failed_role_instance_loses_nothing(st: Stack, fault: RoleFault) -> None:
    # Arrange: the whole instance, the load flowing
    wait_for(lambda: _whole(st), 60, interval=0.5, what="a whole cluster instance")
    start_load(st)
    time.sleep(2.5)  # two status rates: which gateway the load uses
    rows = wait_for(lambda: _whole(st), 60, interval=0.5, what="a whole cluster instance")
    assert isinstance(rows, dict)
    target = _target(rows, fault.role)
    pid = int(rows[target]["pid"])
    logs_at = st.log_sizes()

    # Act
    t_fault = time.time()
    resume = fail_pid(pid, fault.action)
    try:
        recovery, done = recover(st, fault.label, t_fault, t_fault)
    finally:
        if resume is not None:
            resume.join()
    after = wait_for(lambda: _whole(st), 60, interval=0.5, what="the instance whole again")
    assert isinstance(after, dict)
    pause_load_after(st, max(done.values()))

    # Assert (the row goes into the summary first, so a failing fault is in the table too)
    row = {"restarts": after[target]["restarts"] - rows[target]["restarts"], "target": target}
    if fault.role == "matching":
        row["leader"] = f"{target} -> {_target(after, 'matching')}"
    if fault.role == "gateway":
        row["requests_per_s"] = {
            when: {n: (r[n].get("rates") or {}).get("requests") for n in ("gateway-1", "gateway-2")}
            for when, r in (("before", rows), ("after", after))
        }
    v, _ = check_and_record(st, fault.label, recovery, t_fault, done, logs_at, **row)

    if fault.action == "kill":
        assert after[target]["restarts"] > rows[target]["restarts"], "the supervisor started it again"
    if fault.role == "gateway":
        other = "gateway-2" if target == "gateway-1" else "gateway-1"
        assert (after[other].get("rates") or {}).get("requests", 0) > 0, "the load moved to the other gateway"
    if fault.role == "matching" and fault.action == "pause":
        assert _target(after, "matching") != target, "the standby took over from the frozen leader"
    assert_survived(st, v, t_fault, recovery)


# --- server nodes: faults (a), (b) and (c) ------------------------------------------------------

VALKEY = "valkey"
QUOTES = names.quote_key(SYMBOLS[0])
WHOLE_S = 90.0  # how long a fault may leave the instance short of whole before the test fails


@dataclass(frozen=True)
class NodeFault:
    id: str
    target: str  # a stream (the NATS node leading it fails) or VALKEY (the primary of AAPL's quotes)
    action: str  # "kill" or "pause"

    @property
    def label(self) -> str:
        if self.target == VALKEY:
            what = f"the Valkey primary of {SYMBOLS[0]}"
        else:
            what = f"the NATS node leading {self.target}"
        return f"kill -9 {what}" if self.action == "kill" else f"SIGSTOP {SERVER_PAUSE_S:.0f}s {what}"


# MD_TICKS is one stream: its subjects are partitioned (md.tick.<N>.<SYM>), not the stream,
# so the node leading it leads AAPL's ticks.
NODE_FAULTS = [
    NodeFault(f"{a}-{k}", t, a)
    for k, t in (("orders-leader", names.ORDER_STREAM), ("ticks-leader", names.TICK_STREAM), ("aapl-primary", VALKEY))
    for a in ("kill", "pause")
]


def _password(st: Stack) -> str:
    return st.settings.server_credentials().redis_password


def _all_whole(st: Stack) -> dict[str, dict[str, Any]] | None:
    """:func:`_whole`, and every stream led with its replicas current, and the Valkey cluster
    ok with each of its 3 primaries replicated."""
    rows = _whole(st)
    if rows is None or not upcluster.nats_whole(st.nats_url, rows):
        return None
    return rows if upcluster.valkey_whole(rows, _password(st)) else None


def _wait_all_whole(st: Stack, when: str) -> dict[str, dict[str, Any]]:
    rows = poll(lambda: _all_whole(st), WHOLE_S, interval=0.5)
    assert rows, f"the instance is not whole {when} in {WHOLE_S:.0f}s: {upcluster.last_seen}"
    return rows


def _owner(st: Stack, rows: dict[str, dict[str, Any]], fault: NodeFault, avoid: tuple[str, ...] = ()) -> str | None:
    """The node that leads the fault's stream, or serves AAPL's quote slot, asked of the others."""
    if fault.target == VALKEY:
        return upcluster.slot_owner(rows, _password(st), QUOTES, avoid)
    return upcluster.stream_leader(st.nats_url, rows, fault.target, avoid)


@pytest.mark.parametrize("fault", NODE_FAULTS, ids=[f.id for f in NODE_FAULTS])
def test_a_failed_server_node_loses_nothing(st: Stack, fault: NodeFault) -> None:
    # Arrange: the whole instance, servers included (checked before the load: under load a
    # follower is briefly behind), then the load; find the node to fail and its pid.
    rows = _wait_all_whole(st, "before the fault")
    start_load(st)
    target = _owner(st, rows, fault)
    assert target is not None, f"nobody leads {fault.target}: {upcluster.last_seen}"
    rows = st.status()
    pid = int(rows[target]["pid"])
    logs_at = st.log_sizes()

    # Act: a killed node is started again by the supervisor; a frozen one is resumed on a
    # timer after 15 s. While it is frozen, the others must elect a leader for the stream, or
    # promote the replica of the slot, without it.
    t_fault = time.time()
    resume = fail_pid(pid, fault.action)
    try:
        recovery, done = recover(st, fault.label, t_fault, t_fault)
        took_over = None
        if fault.action == "pause":  # asked of the other nodes while it is still frozen
            took_over = poll(lambda: (o := _owner(st, rows, fault, (target,))) != target and o, 30, interval=0.2)
    finally:
        if resume is not None:
            resume.join()
    pause_load_after(st, max(done.values()))
    after = _wait_all_whole(st, "after the fault")
    owner_after = _owner(st, after, fault)

    # Assert (the row goes into the summary first, so a failing fault is in the table too)
    row: dict[str, Any] = {"restarts": after[target]["restarts"] - rows[target]["restarts"], "target": target}
    row["leader"] = f"{target} -> {took_over}, then {owner_after}" if took_over else f"{target} -> {owner_after}"
    v, _ = check_and_record(st, fault.label, recovery, t_fault, done, logs_at, **row)

    if fault.action == "kill":
        assert after[target]["restarts"] > rows[target]["restarts"], "the supervisor started it again"
        assert int(after[target]["pid"]) != pid
    else:
        assert took_over, f"{fault.target}: nobody took over from the frozen {target}: {upcluster.last_seen}"
    assert_survived(st, v, t_fault, recovery)
