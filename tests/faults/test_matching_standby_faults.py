"""Fault injection on the active matching daemon while a standby waits (issue #12, fault d).

``stockctl up`` runs the instance under the fault suite's steady load; a second home, as a
second host would, runs ``stockctl up --only matching`` against the first one's NATS and
Redis: its matching daemon stands by. Each test fails whichever daemon is active, with
kill -9 (its supervisor starts it again) or SIGSTOP for 15 s (resumed on a timer), with the
default 3 s lease. A frozen leader's lease lapses and the standby takes over; when the
frozen one resumes it is refused (its term is superseded), exits 1, and its supervisor
starts it again as the standby. A killed one is started again by its supervisor within
about a second and, being the same member, takes its own lease straight back: the table
says who leads after each fault.

After each fault the checks of ``tests/support/fault_suite.py`` run: no acknowledged order
lost, no fill or trade duplicated in events or views, balances equal the replay and are
conserved, price history with no gap and no duplicate; and again one daemon active, one
standing by.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from stockctl.instance.registry import resolve_urls
from tests.support.cli import Cli
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
from tests.support.stack import wait_for

pytestmark = pytest.mark.faults


@dataclass
class Pair:
    st: Stack
    standby: Cli  # the second home: only a matching daemon, on the first home's servers

    def instances(self) -> dict[str, Cli]:
        return {"first": self.st.cli, "second": self.standby}

    def roles(self) -> dict[str, tuple[str | None, int | None, str]]:
        """Each home's matching daemon: (role, pid, supervisor state)."""
        out = {}
        for name, cli in self.instances().items():
            row: dict[str, Any] = {r["name"]: r for r in cli.json("status")}.get("matching", {})  # type: ignore[union-attr]
            out[name] = ((row.get("role") or {}).get("role"), row.get("pid"), str(row.get("state")))
        return out

    def settled(self) -> dict[str, tuple[str | None, int | None, str]] | None:
        """The roles once one daemon is active and the other stands by, both running."""
        roles = self.roles()
        if sorted(str(r) for r, _, _ in roles.values()) == ["active", "standby"] and all(
            s == "running" for _, _, s in roles.values()
        ):
            return roles
        return None


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("matching-standby-faults")
    with running_stack(request, base, "Matching standby fault summary") as st:
        nats_url, redis_url = resolve_urls(st.settings)
        second = Cli(base / "second")
        second.env |= {
            "STOCKCTL_NATS_URL": nats_url,
            "STOCKCTL_REDIS_URL": redis_url,
            "STOCKCTL_SYMBOLS": ",".join(SYMBOLS),
        }
        second.run("up", "--only", "matching", check=True, timeout=60)
        try:
            p = Pair(st, second)
            wait_for(p.settled, 30, what="one matching daemon active, the other standing by")
            yield p
        finally:
            second.run("down", timeout=60)


FAULTS = [
    ("kill", "kill -9 the active matching daemon"),
    ("pause", f"SIGSTOP {SERVER_PAUSE_S:.0f}s the active matching daemon"),
]


@pytest.mark.parametrize(("action", "label"), FAULTS, ids=[a for a, _ in FAULTS])
def test_a_failed_active_matching_daemon_loses_nothing(pair: Pair, action: str, label: str) -> None:
    st = pair.st

    # Arrange: one active, one standing by, the load flowing
    before = wait_for(pair.settled, 30, what="one matching daemon active, the other standing by")
    assert isinstance(before, dict)
    leader = next(name for name, (role, _, _) in before.items() if role == "active")
    pid = before[leader][1]
    assert isinstance(pid, int)
    start_load(st)
    logs_at = st.log_sizes()

    # Act
    t_fault = time.time()
    resume = fail_pid(pid, action)
    try:
        recovery, done = recover(st, label, t_fault, t_fault)
    finally:
        if resume is not None:
            resume.join()
    after = wait_for(pair.settled, 60, what="one matching daemon active, the other standing by again")
    assert isinstance(after, dict)
    pause_load_after(st, max(done.values()))

    # Assert (the row goes into the summary first, so a failing fault is in the table too)
    new_leader = next(name for name, (role, _, _) in after.items() if role == "active")
    row = {"restarts": "-", "leader": f"{leader} -> {new_leader}"}
    v, _ = check_and_record(st, label, recovery, t_fault, done, logs_at, **row)

    assert after[leader][1] != pid, "the failed daemon was started again"
    if action == "pause":
        assert new_leader != leader, "the standby took over from the frozen leader"
        log = (pair.instances()[leader].home / "logs" / "matching.log").read_text()
        assert "another matching daemon" in log and "stopping without answering" in log
    assert_survived(st, v, t_fault, recovery)
