"""Signing-key rotation across two auth daemons and a gateway, as real processes.

Two auth daemons on their own ports share one Redis; each has a state dir of its own, the
second one's secrets copied from the first (as a second host's would be: the key-encryption
key, and here the key file of an install from before the ring). The gateway fetches JWKS from
the first. Short settings (10 s tokens, 0.5 s key reload, 1 s JWKS refresh, no
grace) let a rotated key go from current to retired within the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from stockctl.auth.keyring import KEK_FILE, LEGACY_KEY_FILE, current_signer, load_or_create_kek, retire_after
from stockctl.auth.tokens import AUDIENCE, ISSUER, TokenSigner
from stockctl.instance import infra
from stockctl.settings import Settings
from tests.support.cli import PASSWORD
from tests.support.stack import REPO, Servers, stack_settings, wait_for

pytestmark = pytest.mark.integration

SHORT = {
    "access_token_ttl_s": 10,
    "signing_key_reload_s": 0.5,
    "signing_key_grace_s": 0,
    "jwks_refresh_s": 1.0,
}
EMAIL = "ada@example.com"


def stockctl(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, with the daemons' settings (rotate-key times retirement with them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")}
    env |= settings.to_env() | {"STOCKCTL_CONFIG": os.devnull, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "stockctl", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )


def kid_of(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token)["kid"])


def login(url: str) -> str:
    resp = httpx.post(f"{url}/auth/login", json={"email": EMAIL, "password": PASSWORD}, timeout=10)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def jwks_kids(url: str) -> set[str]:
    return {k["kid"] for k in httpx.get(f"{url}/.well-known/jwks.json", timeout=10).json()["keys"]}


def status(url: str, path: str, token: str) -> int:
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def fresh_token(signer: TokenSigner) -> str:
    """A token with a fresh expiry, made with ``signer``'s key (as someone holding it could)."""
    now = int(time.time())
    claims = {"sub": EMAIL, "email": EMAIL, "iat": now, "nbf": now, "exp": now + 300}
    return signer.sign(claims | {"aud": AUDIENCE, "iss": ISSUER, "jti": f"t{now}"})


def test_two_auth_daemons_share_keys_rotate_and_retire_them_without_a_restart(
    clean: Servers, tmp_path: Path, daemons
) -> None:
    a = stack_settings(clean, tmp_path / "a", **SHORT)
    b = a.model_copy(update={"auth_port": infra.free_port(), "home": tmp_path / "b"})
    b.ensure_dirs()
    # An install from before the ring: its one key file seeds it, so its tokens stay valid.
    legacy = TokenSigner.load_or_create(a.secrets_dir / LEGACY_KEY_FILE, ttl_s=300)
    load_or_create_kek(a.secrets_dir)
    for name in (KEK_FILE, LEGACY_KEY_FILE):
        shutil.copy2(a.secrets_dir / name, b.secrets_dir / name)
    url_a, url_b = a.effective_auth_url, b.effective_auth_url
    first, second = daemons("auth", a, start=False), daemons("auth", b, start=False)
    first.start(wait_ready=False)  # both at once: they must agree on one first key
    second.start(wait_ready=False)
    wait_for(lambda: first.is_ready() and second.is_ready(), 30, what="both auth daemons ready")
    daemons("gateway", a)  # its auth_url is A's
    gw = a.gateway_url
    httpx.post(f"{url_a}/auth/register", json={"email": EMAIL, "password": PASSWORD}, timeout=10)

    # Act 1: the keys are shared
    k1 = legacy.kid
    token_a, token_b = login(url_a), login(url_b)

    assert jwks_kids(url_a) == jwks_kids(url_b) == {k1}
    assert kid_of(token_a) == kid_of(token_b) == k1
    assert status(url_b, "/auth/me", token_a) == 200 and status(url_a, "/auth/me", token_b) == 200
    assert status(gw, "/api/v1/prices", token_b) == 200
    assert status(gw, "/api/v1/prices", fresh_token(legacy)) == 200  # made before the upgrade: still valid
    assert not (a.secrets_dir / KEK_FILE).stat().st_mode & 0o077
    old_signer = current_signer(a)
    assert old_signer.kid == k1

    # Act 2: rotate
    rotated = stockctl(a, "auth", "rotate-key", "--json")
    rotated_at = time.monotonic()

    assert rotated.returncode == 0, rotated.stderr
    doc = json.loads(rotated.stdout)
    k2 = doc["kid"]
    assert doc["replaced"] == k1 and k2 != k1
    switch = {}
    for name, url in (("A", url_a), ("B", url_b)):
        wait_for(lambda url=url: kid_of(login(url)) == k2, 5, interval=0.05, what=f"auth {name} signs with {k2}")
        switch[name] = time.monotonic() - rotated_at
    print(f"\nsigning with the new key: A after {switch['A']:.2f} s, B after {switch['B']:.2f} s")
    assert max(switch.values()) < 2 * a.signing_key_reload_s + 1.0  # within a reload period (and a login)
    new_b = login(url_b)

    assert jwks_kids(url_a) == jwks_kids(url_b) == {k1, k2}
    assert status(gw, "/api/v1/prices", new_b) == 200  # the gateway fetched the new key on first sight
    assert status(url_a, "/auth/me", new_b) == 200
    assert status(gw, "/api/v1/prices", token_a) == 200  # old tokens still pass
    assert status(gw, "/api/v1/prices", fresh_token(old_signer)) == 200
    keys = json.loads(stockctl(a, "auth", "keys", "--json").stdout)
    assert [(k["kid"], k["state"]) for k in keys] == [(k2, "current"), (k1, "retiring")]

    # Act 3: past retirement (10 s tokens + two reloads + 5 s leeway), through many reload periods
    retire_in = retire_after(a)
    wait_for(lambda: k1 not in jwks_kids(url_a) | jwks_kids(url_b), retire_in + 5, interval=0.1, what="k1 retired")
    gone_after = time.monotonic() - rotated_at

    print(f"old key out of JWKS {gone_after:.1f} s after the rotation (retire_after {retire_in:g} s)")
    assert gone_after >= retire_in - 1.0  # not before every token it signed has expired
    assert jwks_kids(url_a) == jwks_kids(url_b) == {k2}
    forged = fresh_token(old_signer)  # a leaked old key: fresh expiry, refused all the same
    wait_for(lambda: status(gw, "/api/v1/prices", forged) == 401, 2 * a.jwks_refresh_s + 2, what="gateway refuses k1")
    assert status(gw, "/api/v1/prices", fresh_token(legacy)) == 401
    for url in (url_a, url_b):
        me = httpx.get(f"{url}/auth/me", headers={"Authorization": f"Bearer {forged}"}, timeout=10)
        assert (me.status_code, me.json()["detail"]) == (401, "invalid token: unknown key")
    assert kid_of(login(url_a)) == kid_of(login(url_b)) == k2  # no instance went back to k1
    assert status(gw, "/api/v1/prices", login(url_a)) == 200
    for home in (a, b):
        assert not (home.secrets_dir / LEGACY_KEY_FILE).exists()  # it must never seed a ring again
    keys = json.loads(stockctl(a, "auth", "keys", "--json").stdout)
    assert [(k["kid"], k["state"]) for k in keys] == [(k2, "current")]
    for d in (first, second):
        log = d.log()
        assert f"signing with key {k2} now (was {k1})" in log
        assert "Traceback" not in log


def test_operator_commands_fail_in_one_line_and_list_the_keys(clean: Servers, tmp_path: Path, daemons) -> None:
    settings = stack_settings(clean, tmp_path / "home", **SHORT)
    elsewhere = settings.model_copy(update={"home": tmp_path / "elsewhere"})
    elsewhere.ensure_dirs()

    none_yet = stockctl(settings, "auth", "rotate-key")  # no auth has run: nothing to rotate
    daemons("auth", settings)
    no_kek = stockctl(elsewhere, "auth", "rotate-key")
    (elsewhere.secrets_dir / KEK_FILE).write_text("A" * 43 + "\n")
    wrong_kek = stockctl(elsewhere, "auth", "rotate-key")
    table = stockctl(settings, "auth", "keys")
    bad_flag = stockctl(settings, "auth", "rotate-key", "--retire-now")

    for proc in (none_yet, no_kek, wrong_kek, bad_flag):
        assert proc.returncode != 0 and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "copy the file there" in no_kek.stderr  # (the ring was made by the daemon with its own file)
    assert "no " in none_yet.stderr and "jwt-keyring.key" in none_yet.stderr
    assert "cannot open signing key" in wrong_kek.stderr and "copy secrets/jwt-keyring.key" in wrong_kek.stderr
    assert bad_flag.returncode == 2
    assert table.returncode == 0 and "current" in table.stdout
    assert current_signer(settings).kid in table.stdout


def test_two_auth_daemons_started_at_once_in_one_home_make_one_kek_and_one_key(
    clean: Servers, tmp_path: Path, daemons
) -> None:
    def up(url: str) -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    for round_ in range(3):
        redis.Redis.from_url(clean.redis_url).flushall()
        a = stack_settings(clean, tmp_path / f"home{round_}", **SHORT)
        b = a.model_copy(update={"auth_port": infra.free_port()})
        pair = [daemons("auth", s, start=False) for s in (a, b)]
        for d in pair:  # no secrets yet: both race to make the key-encryption key and the first key
            d.start(wait_ready=False)
        urls = [s.effective_auth_url for s in (a, b)]
        wait_for(lambda urls=urls: all(up(u) for u in urls), 30, what="both auth daemons answer")
        httpx.post(f"{urls[0]}/auth/register", json={"email": EMAIL, "password": PASSWORD}, timeout=10)

        (kid,) = jwks_kids(urls[0])
        assert jwks_kids(urls[1]) == {kid}
        assert kid_of(login(urls[1])) == kid
        assert status(urls[1], "/auth/me", login(urls[0])) == 200
        assert sorted(p.name for p in a.secrets_dir.iterdir() if "jwt" in p.name) == [KEK_FILE]  # no legacy file made
        for d in pair:
            assert d.terminate() == 0
