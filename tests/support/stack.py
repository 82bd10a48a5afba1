"""Real nats-server and valkey-server on free ports, daemons as real processes (the fixtures
in ``tests/conftest.py`` hand them out).

No mocks of NATS or Redis anywhere: the servers are the same binaries, started the same
way (stockctl.instance.infra), that ``stockctl up`` runs, credentials included: ``Servers.nats_url``
and ``Servers.redis_url`` carry them, so whatever connects through them is let in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
import redis

from stockctl import servercreds
from stockctl.instance import infra, launch
from stockctl.runtime.process import FAILPOINT_EXIT
from stockctl.settings import Settings
from stockctl.wire import names

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> object:
    """Poll until ``predicate()`` is truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class Server:
    """A real server process on a free loopback port."""

    name: str
    argv: list[str]
    port: int
    ready: Callable[[], bool]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(self.argv, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL)
        wait_for(self.ready, 20, what=f"{self.name} ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class Servers:
    nats: Server
    redis: Server
    host: str = "127.0.0.1"
    credentials: servercreds.ServerCredentials = field(kw_only=True)
    """What the servers accept: the ones :func:`start_servers` started them with."""

    @property
    def nats_url(self) -> str:
        return self.credentials.nats_url(self.host, self.nats.port)

    @property
    def redis_url(self) -> str:
        return self.credentials.redis_url(self.host, self.redis.port)

    def stop(self) -> None:
        self.nats.stop()
        self.redis.stop()


def start_servers(base: Path) -> Servers:
    """nats-server and valkey-server on free ports, with credentials in ``base/secrets`` as ``up`` makes them."""
    host = "127.0.0.1"
    base.mkdir(parents=True, exist_ok=True)
    nats_port, mon_port, redis_port = infra.free_port(), infra.free_port(), infra.free_port()
    (base / "nats").mkdir(exist_ok=True)
    (base / "redis").mkdir(exist_ok=True)
    creds = servercreds.load_credentials(base / "secrets")
    nats_srv = Server(
        "nats",
        infra.nats_argv(
            host, nats_port, mon_port, base / "nats", creds.write_nats_config(base / "secrets" / "nats.conf")
        ),
        nats_port,
        lambda: infra.nats_ready(host, mon_port),
        base / "nats.log",
    )
    redis_srv = Server(
        "redis",
        infra.redis_argv(host, redis_port, base / "redis", creds.write_redis_config(base / "secrets" / "valkey.conf")),
        redis_port,
        lambda: infra.redis_ready(host, redis_port, creds.redis_password),
        base / "redis.log",
    )
    nats_srv.start()
    redis_srv.start()
    return Servers(nats_srv, redis_srv, host, credentials=creds)


async def _delete_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(names.TICK_STREAM)
        await _delete_leases(js)
    finally:
        await nc.close()


async def _delete_leases(js: nats.js.JetStreamContext) -> None:
    """Forget the processors and matching daemons of earlier tests: their leases (killed, never
    given back) would keep the next test's daemons waiting a lease time for their work."""
    for bucket in (names.LEASES_BUCKET, names.MATCHING_LEASES_BUCKET):
        with contextlib.suppress(nats.js.errors.NotFoundError, nats.js.errors.BucketNotFoundError):
            await js.delete_key_value(bucket)


def make_settings(srv: Servers, home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "nats_url": srv.nats_url,
        "redis_url": srv.redis_url,
        "symbols": ["AAPL", "MSFT"],
        "log_level": "DEBUG",
        "metrics_port": 0,  # health/metrics on free ports: tests run many daemons side by side
    }
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    settings.ensure_dirs()
    return settings


def stack_settings(srv: Servers, home: Path, **overrides: object) -> Settings:
    """:func:`make_settings` with auth, gateway and WebSocket on free ports of their own."""
    ports = {"gateway_port": infra.free_port(), "ws_port": infra.free_port(), "auth_port": infra.free_port()}
    return make_settings(srv, home, **{**ports, **overrides})


def wipe_exchange(srv: Servers) -> None:
    """An empty Redis and no exchange or tick streams: a fresh exchange on the session servers."""
    redis.Redis.from_url(srv.redis_url).flushall()

    async def drop() -> None:
        nc = await nats.connect(srv.nats_url)
        js = nc.jetstream()
        for stream in (names.ORDER_STREAM, names.EVENT_STREAM, names.TICK_STREAM):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(stream)
        await _delete_leases(js)
        await nc.close()

    asyncio.run(drop())


@dataclass
class Daemon:
    """A daemon running as a real child process (``python -m daemons NAME``)."""

    name: str
    settings: Settings
    env_overrides: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    @property
    def status_path(self) -> Path:
        return launch.status_path(self.settings, self.name)

    def start(self, wait_ready: bool = True) -> Daemon:
        env = launch.child_env(self.settings, os.environ, **self.env_overrides)
        self.status_path.unlink(missing_ok=True)
        # In pytest's process group (a Ctrl-C stops them too); the fixtures kill what is left at the end.
        with self.log_path.open("ab") as fh:
            self.proc = launch.start(
                launch.daemon_argv(self.name), log=fh, env=env, cwd=REPO, new_session=False, die_with_parent=False
            )
        if wait_ready:
            wait_for(self.is_ready, 30, what=f"{self.name} ready")
        return self

    def is_ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        return launch.daemon_ready(self.settings, self.name, self.proc.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def crash_at(self, point: str) -> None:
        """Start with ``STOCKCTL_FAILPOINTS=point`` and see the daemon die there (exit 86)."""
        self.env_overrides["STOCKCTL_FAILPOINTS"] = point
        self.start(wait_ready=False)
        assert self.proc is not None
        wait_for(lambda: self.proc.poll() is not None, 30, what=point)  # type: ignore[union-attr]
        assert self.proc.returncode == FAILPOINT_EXIT, self.log()
        del self.env_overrides["STOCKCTL_FAILPOINTS"]
