"""The ``stockctl`` CLI as a user runs it: a subprocess against one state dir.

:class:`Cli` runs commands with an environment of its own (free ports, a private config
dir, nothing of the caller's ``STOCKCTL_*``); :func:`cli_instance` hands one to a fixture
and runs ``stockctl down`` after the test. :func:`cli_env` is the environment of a CLI (or
a TUI) started against an instance that is already running; :func:`logged_in_stack` starts
such an instance from daemons and stores a login the way ``stockctl login`` does.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from stockctl.instance import infra
from stockctl.instance.cluster import cluster_ports
from stockctl.instance.registry import write_instance
from stockctl.settings import Settings
from tests.support.stack import REPO, Daemon, Servers, stack_settings

PASSWORD = "correct horse battery staple"


class Cli:
    """Runs ``stockctl`` against one state dir."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")},
            "STOCKCTL_HOME": str(home),
            "STOCKCTL_NATS_PORT": str(infra.free_port()),
            "STOCKCTL_NATS_MONITOR_PORT": str(infra.free_port()),
            "STOCKCTL_REDIS_PORT": str(infra.free_port()),
            "STOCKCTL_GATEWAY_PORT": str(infra.free_port()),
            "STOCKCTL_WS_PORT": str(infra.free_port()),
            "STOCKCTL_AUTH_PORT": str(infra.free_port()),
            "STOCKCTL_METRICS_PORT": "0",
            "XDG_CONFIG_HOME": str(home.parent / "config"),
            "STOCKCTL_RATE": "20",
            "STOCKCTL_LIQUIDITY": "false",  # a quiet exchange unless a test wants market makers
            "COLUMNS": "200",
        }

    def run(
        self, *args: str, timeout: float = 90, check: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "stockctl", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            input=input if input is not None else "",
        )
        if check:
            assert proc.returncode == 0, f"stockctl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def register(self, email: str = "ada@example.com") -> None:
        self.run("register", email, "--password-stdin", input=PASSWORD + "\n", check=True)

    def up(self) -> None:
        self.run("up", check=True)
        self.register()

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json", check=True).stdout)


def cluster_cli(home: Path) -> Cli:
    """A Cli for ``up --cluster``, its base ports in one block whose every derived port (the
    second gateway 20 above the first, routes and buses 100 above) is free now. The block is in
    this test worker's range, or below the kernel's ephemeral ports (32768 up) without one: the
    daemons' ops listeners and every outgoing connection take ephemeral ports, and one of them
    on a derived port would stop the cluster from starting."""
    span = os.environ.get("STOCKCTL_FREE_PORTS", "")
    lo, hi = (int(p) for p in span.split("-")) if span else (10_000, 19_999)
    rng = random.Random()
    for _ in range(100):
        b = rng.randint(lo, hi - 120)
        ports = {"nats_port": b, "nats_monitor_port": b + 3, "redis_port": b + 6}
        ports |= {"auth_port": b + 12, "gateway_port": b + 13, "ws_port": b + 14}
        settings = Settings(**ports, cluster=True)
        if all(infra.port_is_free("127.0.0.1", port) for _, port in cluster_ports(settings)):
            cli = Cli(home)
            cli.env |= {f"STOCKCTL_{k.upper()}": str(v) for k, v in ports.items()}
            return cli
    raise AssertionError(f"no block of ports in {lo}-{hi} with every derived cluster port free")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


def cli_instance(home: Path) -> Iterator[Cli]:
    """For a fixture (``yield from``): a :class:`Cli` on ``home``, and ``stockctl down`` after the test."""
    c = Cli(home)
    yield c
    c.run("down", timeout=120)


def cli_env(settings: Settings, config: Path) -> dict[str, str]:
    """The CLI's environment for the instance of ``settings``, with its logins in ``config``.

    No COLUMNS/LINES: they would override the size of a terminal (a tmux pane, a browser's).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_") and k not in ("COLUMNS", "LINES")}
    env.update(STOCKCTL_HOME=str(settings.home), XDG_CONFIG_HOME=str(config), PYTHONUNBUFFERED="1")
    return env


@dataclass
class LoggedIn:
    settings: Settings
    env: dict[str, str]
    """Environment of the CLI: this instance's state dir and a private config dir (the login)."""


def logged_in_stack(
    servers: Servers, tmp_path: Path, daemons: Callable[..., Daemon], email: str, seed: int
) -> LoggedIn:
    """processor, publisher (5 ticks/s, ``seed``), auth and gateway on free ports, ``instance.json``
    written, and ``email`` registered then logged in exactly as ``stockctl login`` leaves it."""
    settings = stack_settings(servers, tmp_path / "home", rate=5, seed=seed)
    write_instance(settings)
    for name in ("processor", "publisher", "auth", "gateway"):
        daemons(name, settings)
    resp = httpx.post(f"{settings.gateway_url}/auth/register", json={"email": email, "password": PASSWORD}, timeout=10)
    assert resp.status_code == 201, resp.text
    env = cli_env(settings, tmp_path / "config")
    login = subprocess.run(
        [sys.executable, "-m", "stockctl", "login", email, "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=30,
    )
    assert login.returncode == 0, login.stderr
    assert f"logged in as {email}" in login.stdout
    return LoggedIn(settings, env)
