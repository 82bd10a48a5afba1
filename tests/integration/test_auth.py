"""The auth daemon as a real process over real sockets, and the CLI commands that use it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from stockctl.auth.keyring import KEK_FILE, current_signer
from stockctl.auth.tokens import AUDIENCE, ISSUER, TokenError, TokenSigner, TokenVerifier
from stockctl.cli import auth as cli_auth
from stockctl.errors import StockctlError
from stockctl.instance import infra
from stockctl.settings import Settings
from stockctl.wire import names
from tests.support.stack import Daemon, Servers, make_settings, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
MAX_FAILURES = 3
MAX_FAILURES_PER_IP = 6


@dataclass
class Auth:
    settings: Settings
    daemon: Daemon

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.auth_port}"

    def post(self, path: str, body: object = None, **kwargs: object) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=10, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]

    def register(self, email: str, password: str = PASSWORD) -> dict:
        resp = self.post("/auth/register", {"email": email, "password": password})
        assert resp.status_code == 201, resp.text
        return resp.json()

    def login(self, email: str, password: str = PASSWORD, ip: str | None = None) -> httpx.Response:
        headers = {"X-Forwarded-For": ip} if ip else {}
        return self.post("/auth/login", {"email": email, "password": password}, headers=headers)

    def refresh(self, token: str) -> httpx.Response:
        return self.post("/auth/refresh", {"refresh_token": token})

    def me(self, token: str) -> httpx.Response:
        return self.get("/auth/me", headers={"Authorization": f"Bearer {token}"})

    def verifier(self) -> TokenVerifier:
        return asyncio.run(TokenVerifier.fetch(self.url))


def auth_settings(servers: Servers, home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "auth_port": infra.free_port(),
        "login_max_failures": MAX_FAILURES,
        "login_max_failures_per_ip": MAX_FAILURES_PER_IP,
        **overrides,
    }
    return make_settings(servers, home, **values)


@pytest.fixture
def auth(clean: Servers, tmp_path: Path, daemons) -> Auth:
    settings = auth_settings(clean, tmp_path / "home")
    return Auth(settings, daemons("auth", settings))


def error_of(resp: httpx.Response) -> tuple[int, str, str]:
    body = resp.json()
    assert set(body) == {"error", "detail"}, body
    return resp.status_code, body["error"], body["detail"]


# --- accounts and tokens -----------------------------------------------------------------------


def test_register_gives_tokens_that_verify_with_the_published_keys(auth: Auth) -> None:
    doc = auth.register("Ada.Lovelace@Example.COM")

    assert set(doc) == {"email", "access_token", "refresh_token", "token_type", "expires_in"}
    assert doc["email"] == "ada.lovelace@example.com"
    assert doc["token_type"] == "bearer"
    assert abs(doc["expires_in"] - auth.settings.access_token_ttl_s) <= 1
    claims = auth.verifier().verify(doc["access_token"])
    assert claims.email == "ada.lovelace@example.com"
    assert auth.get("/.well-known/jwks.json").json() == auth.get("/auth/jwks.json").json()
    me = auth.me(doc["access_token"])
    assert me.status_code == 200
    assert me.json()["email"] == "ada.lovelace@example.com" and me.json()["disabled"] is False
    assert me.json()["created"].endswith("+00:00")

    again = auth.login("ADA.LOVELACE@example.com")

    assert again.status_code == 200, again.text
    assert again.json()["email"] == "ada.lovelace@example.com"
    assert again.json()["refresh_token"] != doc["refresh_token"]


def test_registering_a_taken_email_is_409_whatever_its_case(auth: Auth) -> None:
    auth.register("ada@example.com")

    resp = auth.post("/auth/register", {"email": "ADA@example.com", "password": "another fine password"})

    assert error_of(resp) == (409, "email_taken", "an account for ada@example.com already exists; log in instead")
    assert auth.login("ada@example.com").status_code == 200  # the first password still stands


def test_bad_emails_are_422_with_the_reason(auth: Auth) -> None:
    cases = {
        "plainaddress": "not a valid email address",
        "a@b": "It should have a period",
        "a b@example.com": "SPACE",
        "": "email address is empty",
        "x" * 250 + "@example.com": "too long",
    }
    for email, why in cases.items():
        status, error, detail = error_of(auth.post("/auth/register", {"email": email, "password": PASSWORD}))

        assert (status, error) == (422, "invalid_email"), email
        assert detail.startswith("email: ") and why in detail, detail
    assert redis.Redis.from_url(auth.settings.effective_redis_url).scard(names.USERS_KEY) == 0


def test_weak_passwords_are_422_naming_the_rule(auth: Auth) -> None:
    cases = {
        "short": "at least 10 characters",
        "zzzzzzzzzzzz": "one character repeated",
        "ada@example.com": "your email address",
        "Password123": "most common passwords",
        "p" + "q" * 128: "at most 128 characters",
    }
    for password, rule in cases.items():
        status, error, detail = error_of(
            auth.post("/auth/register", {"email": "ada@example.com", "password": password})
        )

        assert (status, error) == (422, "weak_password")
        assert detail.startswith("password: ") and rule in detail, detail


def test_malformed_requests_are_4xx_json_with_a_reason(auth: Auth) -> None:
    url = auth.url
    json_type = {"Content-Type": "application/json"}
    cases = [
        (auth.post("/auth/register", {"email": "ada@example.com"}), 422, "password: Field required"),
        (auth.post("/auth/register", {"email": 5, "password": PASSWORD}), 422, "email: Input should be a valid string"),
        (auth.post("/auth/login", {"email": "a@example.com", "password": PASSWORD, "x": 1}), 422, "x: Extra inputs"),
        (auth.post("/auth/refresh", ["nope"]), 422, "body: Input should be a valid dictionary"),
        (httpx.post(f"{url}/auth/login", content=b"{nope", headers=json_type), 400, "not valid JSON"),
        (httpx.post(f"{url}/auth/login", content=b"", headers=json_type), 422, "request body is required"),
        (httpx.post(f"{url}/auth/login", content=b"a=b", headers={"Content-Type": "text/plain"}), 415, "JSON"),
        (httpx.post(f"{url}/auth/login", content=b"x" * 17_000, headers=json_type), 413, "larger than 16384"),
        (
            httpx.post(f"{url}/auth/login", content=iter([b"x" * 9000, b"y" * 9000]), headers=json_type),
            413,
            "larger than 16384",
        ),
        (auth.get("/auth/nope"), 404, "no such endpoint: GET /auth/nope"),
        (auth.get("/auth/login"), 405, "GET is not allowed"),
        (auth.get("/auth/me"), 401, "missing bearer token"),
        (auth.get("/auth/me", headers={"Authorization": "Basic YTpi"}), 401, "missing bearer token"),
    ]
    for resp, status, fragment in cases:
        got_status, _, detail = error_of(resp)

        assert got_status == status, (resp.request.url, resp.text)
        assert fragment in detail, detail
    assert auth.get("/auth/me").headers["WWW-Authenticate"] == "Bearer"
    assert auth.get("/healthz").json() == {"status": "ok", "redis": "ok"}


def test_the_openapi_spec_is_served(auth: Auth) -> None:
    spec = auth.get("/auth/openapi.json").json()

    assert {"/auth/register", "/auth/login", "/auth/refresh", "/auth/logout", "/auth/me"} <= set(spec["paths"])
    assert "429" in spec["paths"]["/auth/login"]["post"]["responses"]
    assert auth.get("/auth/docs").status_code == 200


# --- refresh tokens ---------------------------------------------------------------------------------


def test_refresh_rotates_and_a_spent_token_revokes_every_session(auth: Auth) -> None:
    first = auth.register("ada@example.com")
    second = auth.login("ada@example.com").json()

    rotated = auth.refresh(first["refresh_token"])

    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["refresh_token"] != first["refresh_token"]
    assert auth.verifier().verify(new["access_token"]).email == "ada@example.com"

    # Act: the spent token again (a thief, or a copy)
    reused = auth.refresh(first["refresh_token"])

    # Assert: refused, and every session of the account is gone
    assert error_of(reused)[:2] == (401, "token_reused")
    assert error_of(auth.refresh(new["refresh_token"]))[:2] == (401, "invalid_token")
    assert error_of(auth.refresh(second["refresh_token"]))[:2] == (401, "invalid_token")
    assert auth.login("ada@example.com").status_code == 200  # the account itself is fine


def test_logout_revokes_the_refresh_token(auth: Auth) -> None:
    doc = auth.register("ada@example.com")
    other = auth.login("ada@example.com").json()

    resp = auth.post("/auth/logout", {"refresh_token": doc["refresh_token"]})

    assert resp.status_code == 204 and resp.content == b""
    assert error_of(auth.refresh(doc["refresh_token"])) == (
        401,
        "invalid_token",
        "refresh token is invalid, expired or revoked; log in again",
    )
    assert auth.post("/auth/logout", {"refresh_token": doc["refresh_token"]}).status_code == 204
    assert auth.refresh(other["refresh_token"]).status_code == 200  # other sessions live on


def test_forged_tokens_are_refused_by_me_and_by_the_verifier(auth: Auth) -> None:
    auth.register("ada@example.com")
    ours = current_signer(auth.settings)  # the key the daemon signs with
    now = int(time.time())
    claims = {
        "sub": "ada@example.com",
        "email": "ada@example.com",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "jti": "forged",
    }

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    good = ours.sign(claims)
    header, payload, sig = good.split(".")
    stranger = TokenSigner(Ed25519PrivateKey.generate())
    impostor = TokenSigner(Ed25519PrivateKey.generate())
    impostor.kid = ours.kid
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": ours.kid}).encode())
    evil_payload = b64(json.dumps({**claims, "sub": "eve@example.com", "email": "eve@example.com"}).encode())
    raw_pub = ours.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": ours.kid}).encode())
    hs_mac = hmac.new(raw_pub, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest()
    forged = {
        "token expired": ours.sign({**claims, "iat": now - 4000, "nbf": now - 4000, "exp": now - 3600}),
        "unsigned token": f"{none_header}.{payload}.",
        "bad signature": f"{header}.{evil_payload}.{sig}",
        "unknown key": stranger.sign(claims),
        "unsupported algorithm": f"{hs_header}.{payload}.{b64(hs_mac)}",
        "wrong audience": ours.sign({**claims, "aud": "elsewhere"}),
    }
    verifier = auth.verifier()
    assert auth.me(good).status_code == 200  # the control: a well-made token passes both
    assert verifier.verify(good).jti == "forged"

    for why, token in {**forged, "bad signature ": impostor.sign(claims)}.items():
        with pytest.raises(TokenError) as info:
            verifier.verify(token)
        resp = auth.me(token)

        assert info.value.reason.startswith(why.strip()), (why, info.value.reason)
        status, error, detail = error_of(resp)
        assert (status, error) == (401, "invalid_token")
        assert detail.startswith(f"invalid token: {why.strip()}"), detail


def test_a_disabled_account_is_locked_out_until_enabled(auth: Auth, tmp_path: Path) -> None:
    doc = auth.register("ada@example.com")
    cli = Cli(auth, tmp_path)

    code, out, err = cli.run("users", "disable", "ADA@example.com")

    assert code == 0, err
    assert "disabled ada@example.com" in out
    assert error_of(auth.login("ada@example.com")) == (
        403,
        "account_disabled",
        "account disabled; ask the operator to enable it",
    )
    assert error_of(auth.login("ada@example.com", "a wrong password"))[0] == 401  # no hint without the password
    assert error_of(auth.refresh(doc["refresh_token"]))[0] == 401  # its sessions are revoked
    assert error_of(auth.me(doc["access_token"]))[:2] == (403, "account_disabled")
    users = json.loads(cli.run("users", "list", "--json")[1])
    assert users == [{"email": "ada@example.com", "created": users[0]["created"], "disabled": True, "sessions": 0}]

    assert cli.run("users", "enable", "ada@example.com")[0] == 0

    assert auth.login("ada@example.com").status_code == 200
    assert auth.me(doc["access_token"]).status_code == 200


# --- login throttles -----------------------------------------------------------------------------


def test_failed_logins_per_email_are_throttled_with_429(auth: Auth) -> None:
    auth.register("ada@example.com")
    auth.register("bob@example.com")
    for _ in range(MAX_FAILURES):
        assert error_of(auth.login("ada@example.com", "not the password"))[:2] == (401, "invalid_credentials")

    # Act: the right password, too late
    resp = auth.login("ada@example.com")

    status, error, detail = error_of(resp)
    assert (status, error) == (429, "too_many_attempts")
    retry_after = int(resp.headers["Retry-After"])
    assert 0 < retry_after <= auth.settings.login_window_s
    assert detail == f"too many failed logins for this account; try again in {retry_after} s"
    assert auth.login("bob@example.com").status_code == 200  # the address is not locked out


def test_failed_logins_per_address_are_throttled_with_429(clean: Servers, tmp_path: Path, daemons) -> None:
    # A reverse proxy on loopback, named in STOCKCTL_TRUSTED_PROXIES: its X-Forwarded-For counts.
    settings = auth_settings(clean, tmp_path / "home", trusted_proxies=["127.0.0.1"])
    auth = Auth(settings, daemons("auth", settings))
    emails = [f"user{i}@example.com" for i in range(MAX_FAILURES_PER_IP)]
    auth.register("ada@example.com")
    for email in emails:  # one failure per account: the per-email limit is never reached
        assert auth.login(email, "not the password", ip="203.0.113.9").status_code == 401

    resp = auth.login("ada@example.com", ip="203.0.113.9")

    status, error, detail = error_of(resp)
    assert (status, error) == (429, "too_many_attempts")
    assert "from your address" in detail
    assert int(resp.headers["Retry-After"]) > 0
    assert auth.login("ada@example.com", ip="203.0.113.10").status_code == 200  # another address
    assert auth.login("ada@example.com").status_code == 200  # the proxy itself


# --- the process ----------------------------------------------------------------------------------


def test_sigterm_exits_0_the_key_is_private_and_the_log_holds_no_secrets(auth: Auth) -> None:
    doc = auth.register("ada@example.com")
    auth.login("ada@example.com", "Hunter2-wrong-password")
    rotated = auth.refresh(doc["refresh_token"]).json()
    auth.refresh(doc["refresh_token"])  # reuse: logged as a warning
    auth.me(rotated["access_token"])
    auth.post("/auth/logout", {"refresh_token": rotated["refresh_token"]})
    key = auth.settings.secrets_dir / KEK_FILE

    code = auth.daemon.terminate()

    assert code == 0
    assert not auth.daemon.status_path.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    log = auth.daemon.log()
    assert "registered ada@example.com" in log and "stopped" in log
    for secret in (PASSWORD, "Hunter2", doc["access_token"], doc["refresh_token"], rotated["refresh_token"]):
        assert secret not in log
    for jwt in (doc["access_token"], rotated["access_token"]):
        assert jwt.split(".")[2][:16] not in log
    assert "Traceback" not in log


def test_a_port_in_use_is_a_clear_error(auth: Auth, tmp_path: Path, daemons) -> None:
    settings = auth_settings_like(auth.settings, tmp_path / "second")

    second = daemons("auth", settings, wait_ready=False)

    assert second.proc is not None and second.proc.wait(30) == 1
    assert f"cannot listen on 127.0.0.1:{settings.auth_port}" in second.log()


def auth_settings_like(settings: Settings, home: Path) -> Settings:
    copy = settings.model_copy(update={"home": home})
    copy.ensure_dirs()
    return copy


def test_restarts_keep_accounts_keys_and_sessions_and_a_redis_outage_is_503(
    own_servers: Servers, tmp_path: Path, daemons
) -> None:
    settings = auth_settings(own_servers, tmp_path / "home")
    auth = Auth(settings, daemons("auth", settings))
    doc = auth.register("ada@example.com")
    kid = auth.verifier().verify(doc["access_token"]).kid

    # Act 1: Redis goes away under the running daemon
    own_servers.redis.stop()
    wait_for(lambda: auth.get("/healthz").status_code == 503, 15, what="healthz 503")
    down = auth.login("ada@example.com")

    assert error_of(down)[:2] == (503, "unavailable")
    assert down.headers["Retry-After"]
    assert auth.daemon.proc is not None and auth.daemon.proc.poll() is None

    # Act 2: it comes back
    own_servers.redis.start()
    wait_for(lambda: auth.get("/healthz").status_code == 200, 15, what="healthz 200")

    assert auth.login("ada@example.com").status_code == 200

    # Act 3: everything restarts
    assert auth.daemon.terminate() == 0
    own_servers.redis.stop()
    own_servers.redis.start()
    auth.daemon.start()

    assert auth.login("ada@example.com").status_code == 200
    assert auth.me(doc["access_token"]).status_code == 200  # same signing key
    assert auth.verifier().verify(doc["access_token"]).kid == kid
    assert auth.refresh(doc["refresh_token"]).status_code == 200  # sessions kept too


# --- CLI -------------------------------------------------------------------------------------------


class Cli:
    """The auth commands through typer's CliRunner, errors mapped as ``stockctl.cli.main`` does."""

    def __init__(self, auth: Auth, tmp_path: Path) -> None:
        self.config = tmp_path / "config"
        self.env = {
            "STOCKCTL_AUTH_BASE_URL": auth.url,
            "XDG_CONFIG_HOME": str(self.config),
            "STOCKCTL_HOME": str(auth.settings.home),
            "STOCKCTL_REDIS_URL": auth.settings.effective_redis_url,
            "STOCKCTL_NATS_URL": auth.settings.effective_nats_url,
            "COLUMNS": "200",
        }
        self.root = typer.Typer()
        self.root.add_typer(cli_auth.app)
        self.root.add_typer(cli_auth.users_app, name="users")
        self.runner = CliRunner()

    def run(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = self.runner.invoke(self.root, list(args), input=stdin, env=self.env)
        exc = result.exception
        if isinstance(exc, StockctlError):
            return exc.exit_code, result.stdout, str(exc)
        if exc is not None and not isinstance(exc, SystemExit):
            raise exc
        return result.exit_code, result.stdout, result.stderr

    def credentials(self) -> list[Path]:
        return sorted((self.config / "stockctl" / "credentials").glob("*.json"))


def test_cli_register_whoami_logout(auth: Auth, tmp_path: Path) -> None:
    cli = Cli(auth, tmp_path)

    code, out, err = cli.run("register", "Ada@Example.com", "--password-stdin", stdin=PASSWORD + "\n")

    assert code == 0, err
    assert "registered and logged in as ada@example.com" in out
    assert PASSWORD not in out + err
    (cred,) = cli.credentials()
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert stat.S_IMODE(cred.parent.stat().st_mode) == 0o700
    stored = json.loads(cred.read_text())
    assert stored["email"] == "ada@example.com" and PASSWORD not in cred.read_text()

    code, out, _ = cli.run("whoami", "--json")

    assert code == 0
    assert json.loads(out)["email"] == "ada@example.com"

    code, out, _ = cli.run("logout")

    assert code == 0 and "logged out ada@example.com" in out
    assert cli.credentials() == []
    assert auth.refresh(stored["refresh_token"]).status_code == 401  # revoked on the server

    code, _, message = cli.run("whoami")

    assert code == 4
    assert message == "not logged in; run `stockctl login EMAIL`"


def test_cli_refreshes_an_expiring_token_and_rotates_the_stored_one(auth: Auth, tmp_path: Path) -> None:
    auth.register("ada@example.com")
    cli = Cli(auth, tmp_path)
    assert cli.run("login", "ada@example.com", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    (cred,) = cli.credentials()
    before = json.loads(cred.read_text())
    cred.write_text(json.dumps({**before, "access_exp": time.time() + 5}))  # about to expire

    code, out, err = cli.run("whoami", "--json")

    assert code == 0, err
    assert json.loads(out)["email"] == "ada@example.com"
    after = json.loads(cred.read_text())
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] != before["access_token"]
    assert after["access_exp"] > time.time() + auth.settings.access_token_ttl_s - 10
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600

    # A stolen copy of the old refresh token, spent elsewhere, ends this login too.
    assert error_of(auth.refresh(before["refresh_token"]))[1] == "token_reused"
    cred.write_text(json.dumps({**after, "access_exp": time.time()}))

    code, _, message = cli.run("whoami")

    assert code == 4
    assert "\n" not in message and message.startswith("not logged in (refresh token is invalid")


def test_cli_errors_are_one_line_with_the_servers_reason(auth: Auth, tmp_path: Path) -> None:
    cli = Cli(auth, tmp_path)
    auth.register("ada@example.com")

    wrong = cli.run("login", "ada@example.com", "--password-stdin", stdin="not the password\n")
    weak = cli.run("register", "bob@example.com", "--password-stdin", stdin="short\n")
    empty = cli.run("login", "ada@example.com", "--password-stdin", stdin="")

    assert wrong == (1, "", "invalid email or password")
    assert weak == (2, "", "password: password must be at least 10 characters (got 5)")
    assert empty[0] == 2 and empty[2].startswith("no password on stdin")
    assert cli.credentials() == []


def test_cli_register_prompts_twice_without_echo(auth: Auth, tmp_path: Path) -> None:
    cli = Cli(auth, tmp_path)

    code, out, err = cli.run("register", "bob@example.com", stdin=f"{PASSWORD}\n{PASSWORD}\n")

    assert code == 0, err
    assert PASSWORD not in out + err
    assert "Repeat password" in err
    assert auth.login("bob@example.com").status_code == 200


def test_cli_users_list_disable_enable(auth: Auth, tmp_path: Path) -> None:
    cli = Cli(auth, tmp_path)
    auth.register("bob@example.com")
    assert cli.run("register", "ada@example.com", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0

    code, out, _ = cli.run("users", "list", "--json")

    assert code == 0
    assert [(u["email"], u["disabled"], u["sessions"]) for u in json.loads(out)] == [
        ("ada@example.com", False, 1),
        ("bob@example.com", False, 1),
    ]
    assert "ada@example.com" in cli.run("users", "list")[1]

    assert cli.run("users", "disable", "ada@example.com")[0] == 0

    assert cli.run("whoami") == (1, "", "account disabled; ask the operator to enable it")
    assert cli.run("login", "ada@example.com", "--password-stdin", stdin=PASSWORD + "\n")[2] == (
        "account disabled; ask the operator to enable it"
    )
    assert cli.run("users", "disable", "nobody@example.com")[:1] == (1,)
    assert "no account nobody@example.com" in cli.run("users", "disable", "nobody@example.com")[2]
    assert cli.run("users", "enable", "not-an-email")[0] == 2

    assert cli.run("users", "enable", "ada@example.com")[0] == 0
    assert cli.run("login", "ada@example.com", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    assert cli.run("whoami")[0] == 0
