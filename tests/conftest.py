"""Fixtures only: the servers, a clean slate per test, daemon processes. Helpers live in
``tests/support``; nothing imports this module."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from stockctl.settings import Settings
from tests.support.stack import Daemon, Servers, _delete_stream, start_servers
from tests.support.valkeycluster import ValkeyCluster, start_valkey_cluster

# No test reads the config file of whoever runs the suite: Settings made here, and the
# daemons started from here (they inherit the environment), see an empty one. Tests of the
# file point STOCKCTL_CONFIG at their own; `Cli` drops STOCKCTL_* and uses a private dir.
os.environ["STOCKCTL_CONFIG"] = os.devnull

# Parallel workers (pytest-xdist) hand out ports side by side: each picks from a range of its
# own, below the kernel's ephemeral range, so a port one worker has handed out but its daemon
# has not bound yet is never handed to the other (seen: "auth: cannot listen ... in use").
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw"):
    _base = 20000 + 2000 * (int(_worker[2:]) % 6)
    os.environ["STOCKCTL_FREE_PORTS"] = f"{_base}-{_base + 1999}"


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """One nats-server and one valkey-server for the session; state is wiped per test."""
    srv = start_servers(tmp_path_factory.mktemp("servers"))
    yield srv
    srv.stop()


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[Servers]:
    """Servers of this test alone, for tests that stop and restart them."""
    srv = start_servers(tmp_path / "servers")
    yield srv
    srv.stop()


@pytest.fixture
def valkey_cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    """A Valkey Cluster of this test alone (3 primaries, 3 replicas, 2 s node timeout): about
    3 s to start and form, so tests may kill, pause and fail over its nodes."""
    cluster = start_valkey_cluster(tmp_path / "valkey-cluster")
    yield cluster
    cluster.stop()


@pytest.fixture
def clean(servers: Servers) -> Servers:
    """The session servers with an empty Redis and no tick stream."""
    redis.Redis.from_url(servers.redis_url).flushall()
    asyncio.run(_delete_stream(servers.nats_url))
    return servers


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    """Factory of daemon processes; every one is stopped at the end of the test."""
    started: list[Daemon] = []

    def factory(name: str, settings: Settings, start: bool = True, wait_ready: bool = True) -> Daemon:
        d = Daemon(name, settings)
        started.append(d)
        if start:
            d.start(wait_ready=wait_ready)
        return d

    yield factory
    for d in started:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """Tables some suites leave behind (the fault-injection summary), after the results."""
    for title, text in config.__dict__.get("stockctl_summaries", []):
        terminalreporter.write_sep("-", title)
        terminalreporter.write_line(text)


@pytest.fixture
def snapshot(snap_compare: Callable[..., bool], request: pytest.FixtureRequest) -> Callable[..., None]:
    """``snapshot(app, size, run_before)``: pytest-textual-snapshot's comparison, taken once the
    screen has stopped changing, and failing with the differing lines as text (the plugin's
    HTML report stays on the machine that ran it; a CI log needs to say what changed)."""
    from tests.support.pilot import until_still
    from tests.support.snapshots import explain

    def compare(app: object, size: tuple[int, int], run_before: Callable[..., object]) -> None:
        seen: dict[str, str] = {}

        async def before(pilot: object) -> None:
            await run_before(pilot)  # type: ignore[misc]
            seen["svg"] = await until_still(pilot)  # type: ignore[arg-type]

        if snap_compare(app, terminal_size=size, run_before=before):
            return
        path = Path(request.node.path).parent / "__snapshots__" / request.node.path.stem / f"{request.node.name}.svg"
        expected = path.read_text() if path.exists() else ""
        raise AssertionError(f"{path.name} differs from the screen:\n{explain(expected, seen.get('svg', ''))}")

    return compare
