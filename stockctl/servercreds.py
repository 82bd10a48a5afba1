"""Secrets on disk: files only this user can read, and the embedded servers' credentials.

``write_private`` writes a 0600 file atomically; ``load_credentials`` reads (or on first use
generates) ``secrets/servers.json``, the passwords nats-server and valkey-server are started
with. Settings read it to build URLs, so it depends on nothing but the error family. With
public market data on, the NATS config also lets in connections without credentials, to
read the public subjects only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from stockctl.errors import StockctlError

CREDENTIALS_FILE = "servers.json"
"""Name of the embedded servers' credentials inside the secrets dir."""

NATS_USER = "stockctl"
NATS_PUBLIC_USER = "public"
"""Whom a NATS connection without credentials is, when public market data is on (no password)."""


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

    def redis_cluster_url(self, host: str, ports: Sequence[int]) -> str:
        """``redis+cluster://:PASSWORD@host:p1,host:p2,...``: the nodes of a Valkey Cluster (db 0 only)."""
        return f"redis+cluster://:{self.redis_password}@" + ",".join(f"{host}:{port}" for port in ports)

    def write_nats_config(self, path: Path, public_subjects: Sequence[str] = ()) -> Path:
        """A nats-server config (mode 0600) that admits only this user; its path.

        With ``public_subjects`` (public market data on) a connection without credentials is
        let in too, as :data:`NATS_PUBLIC_USER`: it may subscribe to those subjects and to
        nothing else, and publish nothing (no orders, no ticks, no JetStream API). A wrong
        password is still refused, not taken for the public user."""
        return write_private(path, self.nats_authorization(public_subjects))

    def nats_authorization(self, public_subjects: Sequence[str] = ()) -> str:
        """The config text of :meth:`write_nats_config` (a cluster node adds its own blocks)."""
        if not public_subjects:
            return f'authorization {{\n  user: "{self.nats_user}"\n  password: "{self.nats_password}"\n}}\n'
        allow = ", ".join(f'"{subject}"' for subject in public_subjects)
        lines = [
            "authorization {",
            "  users: [",
            f'    {{user: "{self.nats_user}", password: "{self.nats_password}"}}',
            f'    {{user: "{NATS_PUBLIC_USER}", permissions: {{',
            '      publish: {deny: [">"]}',
            f"      subscribe: {{allow: [{allow}]}}",
            "    }}",
            "  ]",
            "}",
            f'no_auth_user: "{NATS_PUBLIC_USER}"',
        ]
        return "\n".join(lines) + "\n"

    def write_redis_config(self, path: Path, cluster: bool = False) -> Path:
        """A valkey-server config (mode 0600) that requires this password; its path.

        With ``cluster`` the node also gives the password to its primary when it is a replica
        (``masterauth``): in a cluster any node may become one."""
        text = f'requirepass "{self.redis_password}"\nprotected-mode yes\n'
        if cluster:
            text += f'masterauth "{self.redis_password}"\n'
        return write_private(path, text)


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
