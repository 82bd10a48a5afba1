"""The supervisor: starts the servers and daemons of one instance, watches, restarts, stops them.

``stockctl up`` runs it as a detached process (``python -m stockctl.instance.supervisor``, started
through :mod:`stockctl.instance.launch`);
``stockctl up --attach`` runs it in the foreground. It holds ``run/supervisor.lock``
for its lifetime, so a second ``up`` sees it, and writes ``run/state.json`` (every quarter
second, and every 20 ms while a component starts) that ``status`` and ``up`` read. The servers
start together, the daemons once both answer.

Children run in their own process groups (a Ctrl-C reaches only the supervisor, which
then stops them in order) and get SIGTERM from the kernel if the supervisor dies.

The embedded servers start with the state dir's credentials (:mod:`stockctl.instance.infra`);
with ``STOCKCTL_PUBLIC_MARKET_DATA`` NATS also admits clients without credentials, to
subscribe to ``stock_prices`` only. The daemons get the NATS and Redis URLs, credentials
included, in ``STOCKCTL_NATS_URL`` and ``STOCKCTL_REDIS_URL`` (an environment only this user
can read), and nothing the supervisor writes or logs holds them unmasked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from stockctl.instance import cluster, infra, launch
from stockctl.instance.registry import remove_instance, write_instance
from stockctl.runtime.retry import Backoff
from stockctl.settings import Settings, mask_url
from stockctl.wire.seeds import STOCK_PRICES_SUBJECT

log = logging.getLogger("stockctl.supervisor")

EXIT_CONFIG = 78
STABLE_AFTER = 30.0  # a component that ran this long before dying starts its backoff afresh
RESTART_BACKOFF = Backoff(base=0.5, cap=30.0, jitter=0.0)
"""Restart delays of a component that keeps dying: 0.5 s, 1 s, 2 s, ... up to 30 s (no jitter:
one supervisor, and `stockctl status` shows the exact delay)."""
WATCH_POLL = 0.25
"""Seconds between two rounds of the watch loop (exits, restarts, state.json)."""
STARTING_POLL = 0.02
"""The same while a component is starting: readiness is noticed within this (a status file read)."""


@dataclass
class Component:
    """One supervised process."""

    name: str
    kind: str  # "server" or "daemon"
    argv: list[str]
    address: str
    ready: Callable[[Component], bool]
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    state: str = "stopped"
    started: float = 0.0
    ready_at: float = 0.0  # when this run of it became ready (``bench up`` times the start with it)
    restarts: int = 0
    failures: int = 0  # consecutive, for the backoff
    next_start: float = 0.0
    last_exit: int | None = None
    message: str = ""
    rate: float | None = None
    rates: dict[str, float] = field(default_factory=dict)
    ops: str | None = None
    counter: Callable[[], int | None] | None = None  # a server's messages or commands so far
    role_probe: Callable[[], str | None] | None = None  # a cluster node's part: primary, meta leader...
    role: str | None = None

    _counter: tuple[float, int] | None = None
    _log: IO[bytes] | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "pid": self.proc.pid if self.proc and self.proc.returncode is None else None,
            "state": self.state,
            "started": self.started or None,
            "ready": self.ready_at or None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "address": self.address,
            "message": self.message,
            "rate": self.rate,
            "rates": self.rates,
            "ops": self.ops,
            **({"role": {"role": self.role}} if self.role else {}),
        }


def state_path(settings: Settings) -> Path:
    return settings.run_dir / "state.json"


def lock_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisor.lock"


def read_state(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return None


def supervisor_pid(settings: Settings) -> int | None:
    """Pid of the live supervisor of this home, or None (decided by its lock, not a pid file)."""
    path = lock_path(settings)
    if not path.exists():
        return None
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


class Supervisor:
    """Owns the components of one instance."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.redis_password = ""  # the embedded server's, for its readiness and rate
        # Read once: the credentials file is not touched again while the instance runs.
        self.nats_url, self.redis_url = settings.effective_nats_url, settings.effective_redis_url
        self.components = self._plan()
        self.stopping = asyncio.Event()
        self.started = time.time()

    # --- plan -----------------------------------------------------------------------

    def _plan(self) -> list[Component]:
        s = self.s
        # The one carrier of the credentials to the daemons: the URLs themselves.
        child_env = launch.child_env(s, os.environ, STOCKCTL_NATS_URL=self.nats_url, STOCKCTL_REDIS_URL=self.redis_url)
        if s.cluster:
            return [
                Component(
                    p.name,
                    p.kind,
                    p.argv or launch.daemon_argv(p.name),
                    p.address,
                    (lambda c, ready=p.ready: ready()) if p.ready else self._daemon_ready,
                    env=p.env,
                    counter=p.counter,
                    role_probe=p.role,
                )
                for p in cluster.plan(s, child_env)
            ]
        comps: list[Component] = []
        for name in s.components():
            if name == "nats":
                store = s.data_dir / "nats"
                store.mkdir(parents=True, exist_ok=True)
                # public market data: a client without credentials may read stock_prices (seed 000)
                public = (STOCK_PRICES_SUBJECT,) if s.public_market_data else ()
                conf = s.server_credentials().write_nats_config(s.secrets_dir / "nats.conf", public)
                comps.append(
                    Component(
                        "nats",
                        "server",
                        infra.nats_argv(s.host, s.nats_port, s.nats_monitor_port, store, conf),
                        f"{s.host}:{s.nats_port}",
                        lambda c: infra.nats_ready(s.host, s.nats_monitor_port),
                        counter=lambda: infra.nats_msg_counter(s.host, s.nats_monitor_port),
                    )
                )
            elif name == "redis":
                data = s.data_dir / "redis"
                data.mkdir(parents=True, exist_ok=True)
                creds = s.server_credentials()
                self.redis_password = creds.redis_password
                conf = creds.write_redis_config(s.secrets_dir / "valkey.conf")
                comps.append(
                    Component(
                        "redis",
                        "server",
                        infra.redis_argv(s.host, s.redis_port, data, conf),
                        f"{s.host}:{s.redis_port}",
                        lambda c: infra.redis_ready(s.host, s.redis_port, self.redis_password),
                        counter=lambda: infra.redis_cmd_counter(s.host, s.redis_port, self.redis_password),
                    )
                )
            elif name == "matching" and (groups := s.groups().id_step) > 1:
                for n in range(1, groups + 1):  # one per market group: matching-N serves group N
                    argv = launch.daemon_argv(f"matching-{n}")
                    comps.append(Component(f"matching-{n}", "daemon", argv, "", self._daemon_ready, env=child_env))
            else:
                address = {
                    "auth": f"{s.host}:{s.auth_port}",
                    "gateway": f"{s.host}:{s.gateway_port} ws:{s.ws_port}",
                }.get(name, "")
                argv = launch.daemon_argv(name)
                comps.append(Component(name, "daemon", argv, address, self._daemon_ready, env=child_env))
        return comps

    def _daemon_ready(self, comp: Component) -> bool:
        return comp.proc is not None and launch.daemon_ready(self.s, comp.name, comp.proc.pid)

    # --- process control ------------------------------------------------------------

    async def _spawn(self, comp: Component) -> None:
        if comp._log is None:
            comp._log = (self.s.log_dir / f"{comp.name}.log").open("ab", buffering=0)
        comp._log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {comp.name}\n".encode())
        if comp.kind == "daemon":
            launch.status_path(self.s, comp.name).unlink(missing_ok=True)
        try:
            # Own session: a Ctrl-C reaches only the supervisor, which stops the children in order.
            comp.proc = await launch.start_async(
                comp.argv,
                log=comp._log,
                env=comp.env or None,
                cwd=self.s.home,
                new_session=True,
                die_with_parent=True,
            )
        except OSError as exc:
            comp.state, comp.message = "failed", f"cannot start: {exc}"
            log.error("%s: %s", comp.name, comp.message)
            return
        comp.state, comp.started, comp.message, comp.ready_at = "starting", time.time(), "", 0.0
        log.info("%s started (pid %d)", comp.name, comp.proc.pid)

    async def _stop(self, comp: Component) -> None:
        proc = comp.proc
        if proc is None or proc.returncode is not None:
            comp.state = "stopped"
            return
        comp.state = "stopping"
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.s.stop_timeout)
        except TimeoutError:
            log.warning("%s did not stop within %.0fs; killing it", comp.name, self.s.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        comp.state, comp.last_exit = "stopped", proc.returncode
        log.info("%s stopped (exit %s)", comp.name, proc.returncode)

    def _reap(self, comp: Component, now: float) -> None:
        """Notice a component that exited by itself and schedule its restart."""
        proc = comp.proc
        if proc is None or proc.returncode is None or comp.state in ("stopping", "stopped", "failed", "backoff"):
            return
        comp.last_exit = proc.returncode
        if proc.returncode == EXIT_CONFIG:
            comp.state = "failed"
            comp.message = f"exited with a configuration error; see `stockctl logs {comp.name}`"
            log.error("%s: %s", comp.name, comp.message)
            return
        ran = time.time() - comp.started
        comp.failures = 1 if ran > STABLE_AFTER else comp.failures + 1
        delay = RESTART_BACKOFF.delay(comp.failures - 1)
        comp.state, comp.next_start = "backoff", now + delay
        comp.message = f"exited with {proc.returncode}; restarting in {delay:.1f}s"
        log.warning("%s %s", comp.name, comp.message)

    def _sample_rate(self, comp: Component, now: float) -> None:
        s = self.s
        if comp.kind == "daemon":
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads((s.run_dir / f"{comp.name}.json").read_text())
                rates = doc.get("rates") or {}
                comp.rates = rates
                comp.ops = (doc.get("info") or {}).get("ops")
                # The rate that tells whether the daemon is doing its job.
                comp.rate = next(
                    (rates[k] for k in ("ticks", "commands", "frames", "requests", "quotes") if k in rates), None
                )
            return
        if comp.role_probe is not None:
            comp.role = comp.role_probe()
        value = comp.counter() if comp.counter else None
        if value is None:
            return
        if comp._counter is not None and now > comp._counter[0]:
            comp.rate = round((value - comp._counter[1]) / (now - comp._counter[0]), 1)
        comp._counter = (now, value)

    def write_state(self) -> None:
        doc = {
            "supervisor": {"pid": os.getpid(), "started": self.started},
            "instance": {
                "home": str(self.s.home),
                "nats_url": mask_url(self.nats_url),
                "redis_url": mask_url(self.redis_url),
            },
            "components": [c.snapshot() for c in self.components],
        }
        path = state_path(self.s)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)

    # --- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        write_instance(self.s)
        try:
            await self._start_all()
            await self._watch()
        finally:
            # Daemons first, all at once (each finishes its in-flight work while the servers are
            # up), then the servers: a cluster's twenty processes stop in the time of the slowest.
            for kind in ("daemon", "server"):
                await asyncio.gather(*(self._stop(c) for c in self.components if c.kind == kind))
                self.write_state()
            state_path(self.s).unlink(missing_ok=True)
            remove_instance(self.s)
            for comp in self.components:
                if comp._log:
                    comp._log.close()

    async def _start_all(self) -> None:
        """Start the servers together, then, once all are ready, the daemons that need them."""
        servers = [c for c in self.components if c.kind == "server"]
        for comp in servers:
            await self._spawn(comp)
        self.write_state()
        deadline = time.monotonic() + self.s.start_timeout
        waiting = list(servers)
        while waiting and not self.stopping.is_set() and time.monotonic() < deadline:
            for comp in list(waiting):
                if comp.proc is None or comp.proc.returncode is not None:
                    waiting.remove(comp)  # exited: the watch loop reaps it and backs off
                elif comp.ready(comp):
                    comp.state, comp.ready_at = "running", time.time()
                    log.info("%s ready", comp.name)
                    waiting.remove(comp)
            if waiting:
                await asyncio.sleep(STARTING_POLL)
        self.write_state()
        if self.s.cluster and not self.stopping.is_set():
            await self._form_valkey_cluster()
        for comp in self.components:
            if self.stopping.is_set():
                return
            if comp.kind != "server":
                await self._spawn(comp)
        self.write_state()

    async def _form_valkey_cluster(self) -> None:
        """Make the valkey nodes one cluster (once: a formed one is left alone) before any daemon starts."""
        from stockctl.instance.valkeycluster import ClusterFormError, form_cluster  # imports redis-py

        host, ports, password = cluster.redis_nodes(self.s)
        try:
            await asyncio.to_thread(form_cluster, host, ports, password, 1, self.s.start_timeout)
        except ClusterFormError as exc:
            log.error("%s", exc)
            for comp in self.components:
                if comp.name.startswith("redis-"):
                    comp.message = "the Valkey cluster did not form; see `stockctl logs supervisor`"
            raise
        log.info("valkey cluster of %d nodes formed", len(ports))

    async def _watch(self) -> None:
        last_sample = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            for comp in self.components:
                self._reap(comp, now)
                if comp.state == "backoff" and now >= comp.next_start:
                    comp.restarts += 1
                    await self._spawn(comp)
                elif comp.state == "starting" and comp.ready(comp):
                    comp.state, comp.message, comp.ready_at = "running", "", time.time()
                    log.info("%s ready", comp.name)
            if now - last_sample >= 1.0:
                for comp in self.components:
                    if comp.state == "running":
                        self._sample_rate(comp, now)
                last_sample = now
            self.write_state()
            # Quick while a component starts, so `up` returns the moment the last one is ready.
            starting = any(c.state == "starting" for c in self.components)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), STARTING_POLL if starting else WATCH_POLL)


def run_foreground(settings: Settings) -> None:
    """Hold the lock and run the supervisor until SIGINT/SIGTERM."""
    settings.ensure_dirs()
    lock = lock_path(settings).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("stockctl is already running in this state dir", file=sys.stderr)
        sys.exit(1)
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    try:
        asyncio.run(Supervisor(settings).run())
    finally:
        lock.seek(0)
        lock.truncate()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s supervisor: %(message)s")
    run_foreground(Settings())


if __name__ == "__main__":
    main()
