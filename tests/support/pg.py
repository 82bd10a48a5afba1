"""A real PostgreSQL for the tests: initdb + postgres on a free loopback port in a temp dir.

The binaries come from the OS package (Debian's ``postgresql``, installed by
``scripts/install-test-deps``): ``/usr/lib/postgresql/<version>/bin``, or ``pg_config
--bindir``, or ``PATH``. postgres refuses to run as root, so as root the cluster belongs to
the ``postgres`` user (the package creates it; else ``nobody``) and is run through
``runuser``. Each test gets a database of its own (:func:`pg_url`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from stockctl.instance import infra


def pg_bindir() -> Path:
    """Where initdb and postgres are; fails the test run with the fix if nowhere."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            candidates.append(Path(out))
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise RuntimeError("PostgreSQL binaries not found; run scripts/install-test-deps (apt-get install postgresql)")


@dataclass
class PgServer:
    """One running cluster; ``url(db)`` reaches a database on it."""

    port: int
    base: Path
    proc: subprocess.Popen
    user: str = "stockctl"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown: waits for clients, so use fast mode below if stuck
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


def start_pg() -> PgServer:
    bindir = pg_bindir()
    owner: str | None = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                owner = name
                break
    base = Path(tempfile.mkdtemp(prefix="stockctl-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if owner:
        entry = pwd.getpwnam(owner)
        for path in (base, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    subprocess.run(
        _as_owner(
            [str(bindir / "initdb"), "-D", str(data), "-U", "stockctl", "--auth=trust", "-E", "UTF8", "--no-sync"],
            owner,
        ),
        check=True,
        capture_output=True,
    )
    port = infra.free_port()
    log = (base / "postgres.log").open("ab")
    if owner:
        os.chown(base / "postgres.log", pwd.getpwnam(owner).pw_uid, -1)
    argv = [
        str(bindir / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(sock),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",  # the tests crash the writer, never the database: speed over durability here
        "-c",
        "max_connections=50",
    ]
    proc = subprocess.Popen(_as_owner(argv, owner), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    server = PgServer(port, base, proc)
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server.url(), connect_timeout=1):
                return server
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = (base / "postgres.log").read_text(errors="replace")
                server.stop()
                raise RuntimeError(f"postgres did not start:\n{text}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_pg()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database of this test alone."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
