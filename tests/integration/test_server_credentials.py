"""The embedded servers let no one in without credentials, and the credentials never leak.

``stockctl up`` generates a NATS user and password and a Valkey password into
``secrets/servers.json`` (0600) once, starts the servers with them, and hands them to
every daemon and operator command in the URLs; nothing it logs, prints or writes outside
``secrets/`` holds them. The test fixtures' servers are started the same way. External
servers take their credentials in the URLs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
import redis
from nats.aio.msg import Msg

from stockctl import servercreds
from stockctl.settings import mask_url
from stockctl.wire import names
from tests.support.cli import PASSWORD, Cli, cli_instance
from tests.support.stack import Servers, wait_for

pytestmark = pytest.mark.integration


async def _quiet(_: Exception) -> None:
    pass


def nats_connect_error(url: str) -> str:
    """Connect to NATS at ``url`` once; the server's refusal (empty if it let us in)."""

    async def attempt() -> str:
        try:
            nc = await nats.connect(
                url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3, error_cb=_quiet
            )
        except Exception as exc:
            return str(exc)
        await nc.close()
        return ""

    return asyncio.run(attempt())


def raw_redis(port: int, command: bytes) -> bytes:
    """Send one inline command to the Redis port without authenticating; the first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(4096).split(b"\r\n", 1)[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_refuses_strangers(nats_port: int, redis_port: int) -> None:
    """No credentials, or wrong ones: NATS refuses the connection, Redis every command."""
    assert "Authorization Violation" in nats_connect_error(f"nats://127.0.0.1:{nats_port}")
    assert "Authorization Violation" in nats_connect_error(f"nats://stockctl:guess@127.0.0.1:{nats_port}")
    assert raw_redis(redis_port, b"KEYS *").startswith(b"-NOAUTH")
    assert raw_redis(redis_port, b"HGETALL user:ada@example.com").startswith(b"-NOAUTH")
    assert raw_redis(redis_port, b"AUTH guess").startswith(b"-WRONGPASS")


def files_holding(root: Path, secret: str, skip: Path | None = None) -> list[str]:
    """Every file under ``root`` (outside ``skip``) whose bytes contain ``secret``."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or (skip is not None and path.is_relative_to(skip)):
            continue
        if secret.encode() in path.read_bytes():
            found.append(str(path))
    return found


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    yield from cli_instance(tmp_path / "home")


def test_mask_url_hides_every_form_of_userinfo() -> None:
    assert mask_url("nats://stockctl:s3cr3t@127.0.0.1:4222") == "nats://stockctl:***@127.0.0.1:4222"
    assert mask_url("redis://:s3cr3t@10.0.0.6:6379/0") == "redis://:***@10.0.0.6:6379/0"
    assert mask_url("rediss://app:s3cr3t@cache:6380/2") == "rediss://app:***@cache:6380/2"
    assert mask_url("nats://s3cr3ttoken@host:4222") == "nats://***@host:4222"
    assert mask_url("redis://:p@ss/w@rd@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_url("nats://a:s3cr3t@h1:4222,nats://b:s3cr3t@h2:4222") == "nats://a:***@h1:4222,nats://b:***@h2:4222"
    assert mask_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert mask_url(None) is None


def test_the_fixture_servers_require_the_credentials_their_urls_carry(servers: Servers) -> None:
    assert_refuses_strangers(servers.nats.port, servers.redis.port)

    assert nats_connect_error(servers.nats_url) == ""
    assert redis.Redis.from_url(servers.redis_url).ping() is True
    # The monitor port stays open (health, counters) and shows no credentials.
    monitor = int(servers.nats.argv[servers.nats.argv.index("--http_port") + 1])
    for endpoint in ("varz", "connz?auth=true", "accountz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/{endpoint}", timeout=3) as resp:
            page = resp.read().decode()
        assert servers.credentials.nats_password not in page and servers.credentials.redis_password not in page


@pytest.mark.timeout(300)  # two full starts of the instance
def test_up_generates_private_credentials_every_part_uses_and_nothing_shows(cli: Cli) -> None:
    # Act: a full instance
    up = cli.run("up", check=True)
    cli.register()
    secrets_dir = cli.home / "secrets"
    creds = json.loads((secrets_dir / "servers.json").read_text())
    passwords = [creds["nats_password"], creds["redis_password"]]
    nats_port, redis_port = int(cli.env["STOCKCTL_NATS_PORT"]), int(cli.env["STOCKCTL_REDIS_PORT"])

    # Assert: the secrets are private, random and long
    assert mode(secrets_dir) == 0o700
    for name in ("servers.json", "nats.conf", "valkey.conf"):
        assert mode(secrets_dir / name) == 0o600, name
    assert len(set(passwords)) == 2 and all(len(p) >= 40 for p in passwords)

    # Assert: strangers are refused by both servers
    assert_refuses_strangers(nats_port, redis_port)

    # Assert: every daemon is ready with the credentials, and the operator commands use them
    def all_ready() -> list[dict]:
        rows = cli.json("status")
        daemons = [r for r in rows if r["kind"] == "daemon"]
        return rows if daemons and all(r["state"] == "running" and r.get("health") == "ready" for r in daemons) else []

    rows = wait_for(all_ready, 30, what="every daemon ready")
    assert {r["name"] for r in rows} >= {"nats", "redis", "publisher", "processor", "matching", "auth", "gateway"}
    assert [u["email"] for u in cli.json("users", "list")] == ["ada@example.com"]
    wait_for(lambda: cli.json("prices"), 30, what="prices through the gateway")
    cli.run("users", "disable", "ada@example.com", check=True)
    cli.run("users", "enable", "ada@example.com", check=True)

    # Assert: no password in what up, status or doctor print, in any log or in run/, nor in any
    # process's command line (where every local user could read it)
    doctor = cli.run("doctor")
    doctor_json = cli.run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor_json.stdout)}
    assert checks["server creds"]["status"] == "ok", checks
    status_text = cli.run("status")
    printed = [up.stdout, up.stderr, doctor.stdout, doctor_json.stdout, status_text.stdout, json.dumps(rows)]
    instance = json.loads((cli.home / "run" / "instance.json").read_text())
    assert instance["nats_url"] == f"nats://stockctl:***@127.0.0.1:{nats_port}"
    assert instance["redis_url"] == f"redis://:***@127.0.0.1:{redis_port}/0"
    cmdlines = [Path(f"/proc/{r['pid']}/cmdline").read_bytes().decode(errors="replace") for r in rows if r["pid"]]
    assert len(cmdlines) == len(rows)
    for secret in passwords:
        assert not [text for text in printed if secret in text]
        assert not files_holding(cli.home, secret, skip=secrets_dir)
        assert not [c for c in cmdlines if secret in c]

    # Act: a loose mode is what doctor names
    (secrets_dir / "servers.json").chmod(0o644)
    loose = {c["name"]: c for c in json.loads(cli.run("doctor", "--json").stdout)}
    (secrets_dir / "servers.json").chmod(0o600)
    assert loose["server creds"]["status"] == "fail" and "chmod 600" in loose["server creds"]["detail"]

    # Act: down and up again
    cli.run("down", check=True)
    assert not (secrets_dir / "instance-urls.json").exists()
    cli.run("up", check=True)

    # Assert: the same credentials, reused; the data they guard is still there
    assert json.loads((secrets_dir / "servers.json").read_text()) == creds
    assert [u["email"] for u in cli.json("users", "list")] == ["ada@example.com"]
    cli.run("login", "ada@example.com", "--password-stdin", input=PASSWORD + "\n", check=True)
    assert_refuses_strangers(nats_port, redis_port)


def test_external_servers_take_credentials_in_their_urls_and_never_show_them(clean: Servers, cli: Cli) -> None:
    # Arrange: the fixture servers play the external ones; their URLs carry the passwords. They
    # start empty: an earlier test's auth daemon left signing keys wrapped by its own home's key.
    servers = clean
    secrets = [servers.credentials.nats_password, servers.credentials.redis_password]
    assert all(s in servers.nats_url + servers.redis_url for s in secrets)

    # Act: up against them (flags, as a user might), then status and an operator command
    up = cli.run(
        "up",
        "--only",
        "publisher,processor,auth",
        "--symbols",
        "ZZEXT",
        "--nats-url",
        servers.nats_url,
        "--redis-url",
        servers.redis_url,
        check=True,
    )

    def all_ready() -> list[dict]:
        rows = cli.json("status")
        return rows if all(r.get("health") == "ready" for r in rows) else []

    rows = wait_for(all_ready, 30, what="daemons ready against the external servers")
    users = cli.run("users", "list", "--json")  # finds the URLs in the instance's secrets, not in the env

    # Assert: the daemons work through the credentialed URLs
    assert [r["name"] for r in rows] == ["publisher", "processor", "auth"]
    wait_for(
        lambda: redis.Redis.from_url(servers.redis_url).hget(names.quote_key("ZZEXT"), "price"), 20, what="a quote"
    )
    assert users.returncode == 0, users.stderr

    # Assert: the passwords appear nowhere outside secrets/
    for secret in secrets:
        assert secret not in up.stdout + up.stderr + json.dumps(rows) + users.stdout + users.stderr
        assert not files_holding(cli.home, secret, skip=cli.home / "secrets")
    assert json.loads((cli.home / "run" / "instance.json").read_text())["nats_url"] == mask_url(servers.nats_url)


def test_a_wrong_external_password_is_refused_and_not_repeated(servers: Servers, cli: Cli) -> None:
    wrong_nats = servercreds.ServerCredentials("stockctl", "WrongNatsPassword1", "x").nats_url(
        "127.0.0.1", servers.nats.port
    )

    cli.env["STOCKCTL_START_TIMEOUT"] = "20"  # long enough for a slow start to reach NATS
    cli.env["STOCKCTL_NATS_URL"] = wrong_nats  # the variable, as the README recommends
    failed = cli.run("up", "--only", "processor", "--redis-url", servers.redis_url)
    log = (cli.home / "logs" / "processor.log").read_text()

    assert failed.returncode != 0 and failed.stderr.count("\n") == 1, failed.stderr
    assert "not ready" in failed.stderr and "stockctl logs processor" in failed.stderr
    assert "Authorization Violation" in log and "nats://stockctl:***@" in log
    assert log.count("refused") == 1, log  # once, though nats-py retried every half second
    for secret in ("WrongNatsPassword1", servers.credentials.redis_password):
        assert secret not in failed.stdout + failed.stderr
        assert not files_holding(cli.home, secret, skip=cli.home / "secrets")


def test_public_market_data_lets_a_client_without_credentials_read_stock_prices_only(cli: Cli) -> None:
    # Act: the embedded NATS of an instance with public market data on (seed 000's door)
    cli.env["STOCKCTL_PUBLIC_MARKET_DATA"] = "1"
    cli.run("up", "--only", "nats,redis,processor,publisher", "--symbols", "AAPL", check=True)
    port = int(cli.env["STOCKCTL_NATS_PORT"])
    creds = json.loads((cli.home / "secrets" / "servers.json").read_text())
    ours = servercreds.ServerCredentials(**creds).nats_url("127.0.0.1", port)

    async def scenario() -> tuple[list[dict], list[str], list[bytes]]:
        refused: list[str] = []

        async def collect(exc: Exception) -> None:
            refused.append(str(exc))

        # seed 000's consumer, with host and port only
        anon = await nats.connect(f"nats://127.0.0.1:{port}", error_cb=collect, allow_reconnect=False)
        prices = await anon.subscribe("stock_prices")
        got = [json.loads((await prices.next_msg(10)).data) for _ in range(3)]
        admin = await nats.connect(ours)
        leaked: list[bytes] = []

        async def watch(msg: Msg) -> None:
            if b"intruder" in msg.data:
                leaked.append(msg.data)

        for subject in ("ex.order.>", "md.>"):
            await admin.subscribe(subject, cb=watch)
        await admin.flush()
        await anon.publish("ex.order.AAPL", b'{"intruder": 1}')
        await anon.publish("md.tick.AAPL", b'{"intruder": 2}')
        await anon.subscribe("ex.event.>")
        await anon.flush()
        await asyncio.sleep(0.5)
        got.append(json.loads((await prices.next_msg(10)).data))  # the connection stays, reading
        await anon.close()
        await admin.close()
        return got, refused, leaked

    got, refused, leaked = asyncio.run(scenario())

    # Assert: it reads StockPrice messages, and every other door is shut
    assert {m["symbol"] for m in got} == {"AAPL"} and all(list(m) == ["symbol", "price", "timestamp"] for m in got)
    assert leaked == []
    assert any('permissions violation for publish to "ex.order.aapl"' in r.lower() for r in refused), refused
    assert any('permissions violation for publish to "md.tick.aapl"' in r.lower() for r in refused), refused
    assert any('permissions violation for subscription to "ex.event.>"' in r.lower() for r in refused), refused
    # a wrong password is refused, not taken for the public user
    assert "Authorization Violation" in nats_connect_error(f"nats://stockctl:guess@127.0.0.1:{port}")
