"""What the ``--cluster`` benches share: the cluster ``stockctl up --cluster`` runs, built privately.

Contract:

* :func:`cluster_ports` picks a block of base ports (the ``*_port`` settings) whose every derived
  port (:func:`stockctl.instance.cluster.cluster_ports`: nodes, routes, buses, second listeners)
  is free now, below the kernel's ephemeral range (or in ``STOCKCTL_FREE_PORTS=LO-HI``).
* :class:`Cluster` builds, for a :class:`~stockctl.bench.kit.PrivateStack` in its temporary
  home, what ``up --cluster`` builds: the parts of :func:`stockctl.instance.cluster.plan`
  (3 routed nats-server nodes with JetStream, every stream at R3; 6 valkey-server nodes),
  started on those ports, each waited for; the Valkey Cluster formed with
  :func:`~stockctl.instance.valkeycluster.form_cluster` (3 primaries, 3 replicas); JetStream's
  meta leader elected. Nothing of the plan is rebuilt here: the supervisor's code is used.
* :meth:`Cluster.start_daemons` starts daemons of the plan by their plan names
  (``processor-1``, ``matching-2``...) with the plan's environment (the three NATS URLs, the
  ``redis+cluster://`` URL, ``STOCKCTL_STREAM_REPLICAS=3``), and waits for each to be ready.
  :meth:`Cluster.stop_daemons` stops some of them again (a configuration run in turn), and
  :meth:`Cluster.reset_exchange` empties the exchange before the next configuration.
* Every process goes through the stack (its ``procs``, so :func:`~stockctl.bench.kit.run_private`
  stops it, and its ``pids``, so a :class:`~stockctl.bench.cpu.CpuMeter` meters it by name).
* :func:`idle_cpu` meters the processes for :data:`IDLE_S` with nothing offered: what the
  cluster costs before any work (heartbeats, leases, Raft), beside each step's figures.
* :func:`sustained_step` is the step of a ladder whose CPU a configuration's headline shows;
  :func:`cluster_doc` and :func:`load_doc` are the ``cluster`` and load parts of a ``--json`` document.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from typing import Any

from stockctl.bench.cpu import CpuMeter
from stockctl.bench.kit import BenchError, LadderResult, PrivateStack, clean_env, close_nats, connect_nats
from stockctl.errors import StartupError
from stockctl.instance import cluster, infra, launch
from stockctl.settings import Settings

CLUSTER_START_TIMEOUT = 60.0
"""Seconds for every node to answer, the Valkey Cluster to form and a JetStream meta leader."""
PORT_RANGE = (10_000, 19_999)
"""Where base ports are looked for without ``STOCKCTL_FREE_PORTS``: below the ephemeral ports
(32768 up), which the daemons' outgoing connections take and could take a derived port from."""
IDLE_S = 2.0
"""Seconds the processes are metered with nothing offered, before a configuration's steps."""
BLOCK_SPAN = 120
"""Ports above a base that derived ports reach (routes and buses 100 up, second listeners 20 up)."""


def cluster_ports(host: str) -> dict[str, int]:
    """Base port settings for a cluster whose every derived port is free now."""
    span = os.environ.get("STOCKCTL_FREE_PORTS", "")
    lo, hi = (int(p) for p in span.split("-")) if span else PORT_RANGE
    rng = random.Random()
    for _ in range(200):
        b = rng.randint(lo, hi - BLOCK_SPAN)
        ports = {"nats_port": b, "nats_monitor_port": b + 3, "redis_port": b + 6}
        ports |= {"auth_port": b + 12, "gateway_port": b + 13, "ws_port": b + 14}
        probe = Settings(host=host, cluster=True, **ports)
        if all(infra.port_is_free(host, port) for _, port in cluster.cluster_ports(probe)):
            return ports
    raise BenchError(f"no block of ports in {lo}-{hi} with every port of a cluster free")


class Cluster:
    """The ``up --cluster`` servers and daemons of one bench, started through ``stack``."""

    def __init__(self, stack: PrivateStack[Any], settings: Settings) -> None:
        if not settings.cluster:
            raise ValueError("cluster settings expected")
        self.stack = stack
        self.settings = settings
        self.servers: list[str] = []
        """Node names in plan order: nats-1..3, redis-1..6."""
        self.daemon_envs: dict[str, dict[str, str]] = {}
        """Each daemon of the plan, by its plan name, with its environment."""

    @property
    def nats_url(self) -> str:
        """The three nodes' URLs, credentials included: never print it unmasked."""
        return self.settings.effective_nats_url

    async def start(self) -> None:
        """Start every node of the plan, wait for all, form the Valkey Cluster, wait for a meta leader."""
        s, stack = self.settings, self.stack
        s.ensure_dirs()
        env = launch.child_env(
            s, clean_env(), STOCKCTL_NATS_URL=s.effective_nats_url, STOCKCTL_REDIS_URL=s.effective_redis_url
        )
        parts = cluster.plan(s, env)
        servers = [p for p in parts if p.kind == "server"]
        self.daemon_envs = {p.name: p.env for p in parts if p.kind == "daemon"}
        self.servers = [p.name for p in servers]
        stack.progress(f"starting the cluster: {', '.join(self.servers)}")
        procs = {p.name: stack.spawn(p.name, p.argv, clean_env()) for p in servers}
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT
        waiting = {p.name: p.ready for p in servers if p.ready is not None}
        while waiting:
            for name in sorted(waiting):
                if procs[name].poll() is not None:
                    tail = stack.procs.log_tail(name) or None
                    raise StartupError(f"{name} exited with {procs[name].returncode} at start", tail)
                if waiting[name]():
                    del waiting[name]
            self._check_deadline(deadline, sorted(waiting))
            if waiting:
                await asyncio.sleep(0.05)
        await self._form_valkey(deadline)
        monitors = [s.nats_monitor_port + i for i in range(len(s.nats_ports))]
        while not all(cluster.meta_leader(s.host, m) for m in monitors):
            self._check_deadline(deadline, ["a JetStream meta leader"])
            await asyncio.sleep(0.1)

    async def _form_valkey(self, deadline: float) -> None:
        from stockctl.instance.valkeycluster import ClusterFormError, form_cluster  # imports redis-py

        host, ports, password = cluster.redis_nodes(self.settings)
        self.stack.progress(f"forming the Valkey Cluster of {len(ports)} nodes")
        try:
            await asyncio.to_thread(form_cluster, host, ports, password, 1, max(1.0, deadline - time.monotonic()))
        except ClusterFormError as exc:
            raise StartupError(exc.message, exc.hint) from None

    @staticmethod
    def _check_deadline(deadline: float, late: list[str]) -> None:
        if late and time.monotonic() > deadline:
            raise StartupError(f"{', '.join(late)} not ready within {CLUSTER_START_TIMEOUT:g}s", "see the nodes' logs")

    async def start_daemons(self, names: list[str], timeout: float) -> None:
        """Start daemons of the plan (``processor-2``...) with the plan's environment; wait until each is ready."""
        unknown = [n for n in names if n not in self.daemon_envs]
        if unknown:
            raise BenchError(f"not in the cluster's plan: {', '.join(unknown)}")
        await self.stack.start_daemons(
            self.settings, names, timeout, f"starting {', '.join(names)} on the cluster", envs=self.daemon_envs
        )

    def stop_daemons(self, names: list[str]) -> None:
        """Stop daemons started by :meth:`start_daemons` (the next configuration starts its own)."""
        procs = self.stack.procs
        for name in names:
            proc = self.stack.daemons.pop(name, None)
            self.stack.pids.pop(name, None)
            if proc is not None:
                procs._stop_one(proc)

    async def reset_exchange(self) -> None:
        """An empty exchange for the next configuration, its daemons stopped: the exchange streams
        and the matching leases deleted, every Valkey primary flushed. A configuration with other
        market groups could not start on the last one's history (matching refuses a changed layout)."""
        import nats.js.errors

        from stockctl.runtime.connections import sync_redis_client
        from stockctl.wire import names

        nc = await connect_nats(self.nats_url, "bench-reset")
        try:
            js = nc.jetstream()
            for stream in (names.ORDER_STREAM, names.EVENT_STREAM):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(stream)
            with contextlib.suppress(nats.js.errors.NotFoundError, nats.js.errors.BucketNotFoundError):
                await js.delete_key_value(names.MATCHING_LEASES_BUCKET)
        finally:
            await close_nats(nc)
        r = sync_redis_client(self.settings.effective_redis_url)
        try:
            await asyncio.to_thread(r.flushall)  # the cluster client sends it to every primary
        finally:
            r.close()

    def status_info(self, name: str) -> dict[str, Any]:
        """The ``info`` of a daemon's status file (its partitions, its role), {} while there is none."""
        doc = launch.read_status(launch.status_path(self.settings, name)) or {}
        return doc.get("info") or {}

    def node_pids(self) -> dict[str, int]:
        """Every node, by name: what the CPU tables list after the daemons."""
        return {name: self.stack.pids[name] for name in self.servers}


async def idle_cpu(cpu: CpuMeter) -> dict[str, float]:
    """Cores each process of ``cpu`` used over :data:`IDLE_S` while nothing is offered."""
    cpu.start()
    await asyncio.sleep(IDLE_S)
    return cpu.stop()


def sustained_step(ladder: LadderResult) -> Any:
    """The step that delivered the sustained rate (the fastest that kept up); the last step if none did."""
    kept = [s for s in ladder.steps if s.kept_up]
    if kept:
        return max(kept, key=ladder.delivered)
    return ladder.steps[-1] if ladder.steps else None


def cluster_doc(settings: Settings) -> dict[str, Any]:
    """The ``cluster`` part of a ``--json`` document: what ran."""
    return {
        "nats_nodes": len(settings.nats_ports),
        "valkey_nodes": len(settings.redis_ports),
        "valkey_primaries": len(settings.redis_ports) // 2,
        "stream_replicas": cluster.STREAM_REPLICAS,
    }


def load_avg() -> float | None:
    """The 1-minute load average now (None where there is none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def load_doc(before: float | None, after: float | None) -> dict[str, Any]:
    """The machine's 1-minute load average at the start and at the end of the run."""
    return {"loadavg_1m_start": before, "loadavg_1m_end": after}
