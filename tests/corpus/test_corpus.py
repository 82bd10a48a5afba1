"""The bad-input corpus (``tests/corpus/``) against real daemons, then fuzzing from the OpenAPI specs.

Every case of the corpus gets a clear refusal (4xx JSON with a reason, a WebSocket error
frame with the connection still usable, one ``error:`` line from the CLI, a replay error
naming the line), and after all of them the engine state and the accounts are exactly
what they were: ``test_state_and_accounts_are_unchanged`` compares a snapshot taken
before the first case. Run alone with ``pytest tests/corpus`` (or ``-m corpus``);
``-s`` prints the counts per category and of the fuzzing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockctl.auth.keyring import current_signer
from stockctl.auth.tokens import AUDIENCE, ISSUER, TokenSigner, public_jwk
from stockctl.auth.users import list_users
from stockctl.instance import infra
from stockctl.instance.registry import write_instance
from stockctl.marketdata.replay import ReplayError, read_rows, validate
from stockctl.settings import Settings
from tests.support.stack import REPO, Daemon, Servers, stack_settings, wait_for, wipe_exchange

pytestmark = [pytest.mark.integration, pytest.mark.corpus]

CORPUS = Path(__file__).parent
PASSWORD = "correct horse battery staple"
VICTIM, BYSTANDER, ATTACKER, FUZZER = "alice@example.com", "bob@example.com", "mallory@example.com", "fuzz@example.com"
VICTIM_COID = "victim-coid-5f2c"
SECRETS = (VICTIM, BYSTANDER, VICTIM_COID)
"""Strings no answer to the attacker may contain, unless the attacker sent them."""


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((CORPUS / name).read_text(encoding="utf-8"))


AUTH_CASES = load("auth_http.json")
GATEWAY_CASES = load("gateway_http.json")
WS_CASES = load("ws.json")
TOKEN_CASES = load("tokens.json")
CLI_CASES = load("cli.json")
CSV_CASES = load("csv_lines.json")

TOKEN_TARGETS = (
    "rest-prices",
    "rest-balances",
    "rest-order",
    "rest-cancel",
    "auth-me",
    "ws-header",
    "ws-first",
    "ws-reauth",
)
NO_TOKEN_STRING = {"no_header", "basic_scheme"}  # nothing to send as {"op":"auth","token":...}
TOKEN_PARAMS = [
    (case, target)
    for case in TOKEN_CASES
    for target in TOKEN_TARGETS
    if not (case["make"] in NO_TOKEN_STRING and target in ("ws-first", "ws-reauth"))
    and not (case["make"] == "no_header" and target == "ws-header")  # that is first-message auth: ws.json
]


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["id"] for c in cases]


# --- expanding a case into bytes ----------------------------------------------------------------


def expand(value: Any, ph: dict[str, str]) -> Any:
    """Fill placeholders and ``$repeat`` / ``$list`` directives inside a JSON value."""
    if isinstance(value, dict):
        if "$repeat" in value:
            return (
                fill(value.get("prefix", ""), ph)
                + value["$repeat"] * value["times"]
                + fill(value.get("suffix", ""), ph)
            )
        if "$list" in value:
            return [expand(value["$list"], ph)] * value["times"]
        return {k: expand(v, ph) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, ph) for v in value]
    if isinstance(value, str):
        if value == "{victim_order:int}":
            return int(ph["victim_order"])
        return fill(value, ph)
    return value


def fill(text: str, ph: dict[str, str]) -> str:
    for key, val in ph.items():
        text = text.replace("{" + key + "}", val)
    return text


def parts(spec: list[Any], ph: dict[str, str]) -> str:
    """``[[text, times], ...]`` or ``[str | {"$repeat": ...}, ...]`` joined into one string."""
    out = []
    for item in spec:
        if isinstance(item, list):
            out.append(fill(item[0], ph) * item[1])
        else:
            out.append(expand(item, ph))
    return "".join(out)


def http_request(case: dict[str, Any], ph: dict[str, str]) -> tuple[str, bytes | None, list[tuple[bytes, bytes]]]:
    """Path, body and headers of an HTTP case (headers as raw bytes: some are not ASCII)."""
    path = parts(case["path_parts"], ph) if "path_parts" in case else fill(case["path"], ph)
    body: bytes | None = None
    if "json" in case:
        body = json.dumps(expand(case["json"], ph), ensure_ascii=False).encode()
    elif "body" in case:
        body = fill(case["body"], ph).encode()
    elif "body_hex" in case:
        body = bytes.fromhex(case["body_hex"])
    elif "body_parts" in case:
        body = parts(case["body_parts"], ph).encode()
    headers: dict[str, bytes] = {}
    if body is not None:
        headers["content-type"] = b"application/json"
    for k, v in case.get("headers", {}).items():
        headers[k.lower()] = fill(v, ph).encode()
    for k, v in case.get("headers_hex", {}).items():
        headers[k.lower()] = bytes.fromhex(v)
    return path, body, [(k.encode(), v) for k, v in headers.items() if v]


# --- the running instance -----------------------------------------------------------------------


@dataclass
class Stack:
    settings: Settings
    procs: list[Daemon]
    tmp: Path
    tokens: dict[str, str] = field(default_factory=dict)
    victim_order: int = 0
    cli_env: dict[str, str] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def gateway(self) -> str:
        return self.settings.gateway_url

    @property
    def auth(self) -> str:
        return self.settings.effective_auth_url

    @property
    def ph(self) -> dict[str, str]:
        return {
            "password": PASSWORD,
            "attacker_email": ATTACKER,
            "attacker_token": self.tokens[ATTACKER],
            "victim_email": VICTIM,
            "victim_order": str(self.victim_order),
            "victim_coid": VICTIM_COID,
        }

    def call(self, email: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[email]}", **kw.pop("headers", {})}
        return self.http.request(method, f"{self.gateway}{path}", headers=headers, **kw)

    def ok(self, email: str, method: str, path: str, **kw: Any) -> Any:
        resp = self.call(email, method, path, **kw)
        assert resp.status_code < 300, (path, resp.status_code, resp.text)
        return resp.json()


def cli_env(home: Path, config: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")},
        "STOCKCTL_HOME": str(home),
        "XDG_CONFIG_HOME": str(config),
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }


def run_cli(args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 60) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "stockctl", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=timeout,
        cwd=REPO,
        errors="replace",
    )
    return proc.returncode, proc.stdout, proc.stderr


def snapshot(s: Stack) -> dict[str, Any]:
    """Everything the corpus must leave alone, read through the query endpoints and Redis."""
    doc: dict[str, Any] = {}
    for email in (VICTIM, BYSTANDER, ATTACKER):
        doc[email] = {
            "balances": s.ok(email, "GET", "/api/v1/balances"),
            "open": s.ok(email, "GET", "/api/v1/orders"),
            "fills": s.ok(email, "GET", "/api/v1/fills?limit=1000"),
            "me": s.ok(email, "GET", "/auth/me"),
        }
        if email != ATTACKER:  # the attacker's rejected orders are part of its own history
            doc[email]["history"] = s.ok(email, "GET", "/api/v1/orders?all=true&limit=1000")
    for market in ("TATA_INR", "JIO_INR"):
        book = s.ok(VICTIM, "GET", f"/api/v1/book/{market}?depth=500")
        doc[f"book:{market}"] = {k: book.get(k) for k in ("bids", "asks", "last")}
        doc[f"trades:{market}"] = s.ok(VICTIM, "GET", f"/api/v1/trades/{market}?limit=1000")
    doc["markets"] = s.ok(VICTIM, "GET", "/api/v1/markets")
    doc["users"] = [u.doc() for u in list_users(s.settings)]
    return doc


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """matching, processor, auth and gateway; a victim with open orders and fills; a logged-in attacker."""
    wipe_exchange(servers)
    tmp = tmp_path_factory.mktemp("corpus")
    settings = stack_settings(
        servers,
        tmp / "home",
        symbols=["AAPL"],
        log_level="INFO",
        access_token_ttl_s=3600,
        login_max_failures=1000,
        login_max_failures_per_ip=100_000,
        register_max_per_ip=100_000,
    )
    procs = [Daemon(name, settings) for name in ("matching", "processor", "auth", "gateway")]
    s = Stack(settings, procs, tmp)
    try:
        for d in procs:
            d.start(wait_ready=False)
        for d in procs:
            wait_for(d.is_ready, 60, what=f"{d.name} ready")
        for email in (VICTIM, BYSTANDER, ATTACKER, FUZZER):
            resp = s.http.post(f"{s.gateway}/auth/register", json={"email": email, "password": PASSWORD})
            assert resp.status_code == 201, resp.text
            s.tokens[email] = resp.json()["access_token"]
        # The victim rests orders in both markets and trades with the bystander.
        body = {"market": "TATA_INR", "side": "buy", "qty": "5", "price": "99.50", "client_order_id": VICTIM_COID}
        s.victim_order = s.ok(VICTIM, "POST", "/api/v1/orders", json=body)["order_id"]
        s.ok(VICTIM, "POST", "/api/v1/orders", json={"market": "TATA_INR", "side": "sell", "qty": "10", "price": "101"})
        s.ok(VICTIM, "POST", "/api/v1/orders", json={"market": "JIO_INR", "side": "sell", "qty": "2", "price": "250"})
        filled = s.ok(
            BYSTANDER, "POST", "/api/v1/orders", json={"market": "TATA_INR", "side": "buy", "qty": "4", "price": "101"}
        )
        assert filled["status"] == "filled", filled
        for email in (ATTACKER, FUZZER):
            s.ok(email, "GET", "/api/v1/balances")  # funded once, before the snapshot
        wait_for(lambda: s.call(VICTIM, "GET", "/api/v1/prices/TATA_INR").status_code == 200, 20, what="TATA_INR quote")
        # The CLI finds this instance through its state dir and logs in as the attacker.
        write_instance(settings)
        s.cli_env = cli_env(settings.home, tmp / "config")
        code, _, err = run_cli(["login", ATTACKER, "--password-stdin"], s.cli_env, PASSWORD + "\n")
        assert code == 0, err
        s.before = snapshot(s)
        yield s
    finally:
        s.http.close()
        for d in procs:
            if d.proc and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
        for d in procs:
            assert "Traceback" not in d.log(), f"{d.name} logged a traceback:\n{d.log()[-3000:]}"


def never_reveals(answer: str, request: str) -> None:
    for secret in SECRETS:
        if secret.lower() not in request.lower():
            assert secret not in answer, f"the answer reveals {secret!r}: {answer[:400]}"


def check_error_doc(doc: Any, needle: str, where: str) -> None:
    assert isinstance(doc, dict), f"{where}: not a JSON object: {doc!r}"
    assert isinstance(doc.get("error"), str) and doc["error"], f"{where}: no error code: {doc!r}"
    assert isinstance(doc.get("detail"), str) and doc["detail"], f"{where}: no detail: {doc!r}"
    assert needle.lower() in doc["detail"].lower(), f"{where}: {needle!r} not in {doc['detail']!r}"


def check_http(s: Stack, case: dict[str, Any], base: str, default_auth: str | None) -> None:
    ph = s.ph
    path, body, headers = http_request(case, ph)
    if default_auth is not None and case.get("auth") != "none" and not any(k == b"authorization" for k, _ in headers):
        headers.append((b"authorization", f"Bearer {s.tokens[default_auth]}".encode()))
    resp = s.http.request(case["method"], base + path, content=body, headers=headers)
    where = f"{case['method']} {path[:120]}"
    allowed = case["status"] if isinstance(case["status"], list) else [case["status"]]

    assert resp.status_code < 500, f"{where}: {resp.status_code} {resp.text[:300]}"
    assert resp.status_code in allowed, f"{where}: {resp.status_code} not in {allowed}: {resp.text[:300]}"
    if resp.status_code >= 400:
        check_error_doc(resp.json(), case.get("needle", ""), where)
    elif resp.content:
        doc = resp.json()
        for key, value in case.get("json_subset", {}).items():
            assert doc[key] == value, f"{where}: {key} is {doc[key]!r}, not {value!r}"
        if "same_as" in case:
            assert doc == s.ok(ATTACKER, "GET", case["same_as"]), f"{where}: differs from {case['same_as']}"
    # "echoes": the attacker's own earlier input that this answer may repeat (its order history)
    request_text = path + (body or b"").decode(errors="replace") + repr(headers) + fill(str(case.get("echoes")), ph)
    never_reveals(resp.text, request_text)


# --- the corpus: well formed, counted -----------------------------------------------------------


COMMON_KEYS = {"id", "why", "bug", "needle"}
HTTP_KEYS = {"method", "path", "path_parts", "json", "body", "body_hex", "body_parts", "headers", "headers_hex"}
KEYS = {
    "auth_http": COMMON_KEYS | HTTP_KEYS | {"status"},
    "gateway_http": COMMON_KEYS | HTTP_KEYS | {"status", "auth", "json_subset", "same_as", "echoes"},
    "ws": COMMON_KEYS | {"phase", "send", "send_json", "send_parts", "send_hex", "repeat", "expect", "code", "headers"},
    "tokens": {"id", "why", "make", "reason"},
    "cli": COMMON_KEYS | {"args", "stdin", "exit", "home", "files"},
    "csv_lines": COMMON_KEYS | {"line", "before"},
}


def test_corpus_files_are_well_formed() -> None:
    counts = {
        "auth endpoints (x2: direct and through the gateway)": len(AUTH_CASES),
        "gateway REST": len(GATEWAY_CASES),
        "WebSocket frames": len(WS_CASES),
        "tokens (x targets)": len(TOKEN_CASES),
        "CLI arguments": len(CLI_CASES),
        "CSV replay lines": len(CSV_CASES),
    }
    for name, cases in (
        ("auth_http", AUTH_CASES),
        ("gateway_http", GATEWAY_CASES),
        ("ws", WS_CASES),
        ("tokens", TOKEN_CASES),
        ("cli", CLI_CASES),
        ("csv_lines", CSV_CASES),
    ):
        dupes = [k for k, n in Counter(ids(cases)).items() if n > 1]
        assert not dupes, f"{name}: duplicate ids {dupes}"
        assert all(isinstance(c.get("why"), str) and c["why"] for c in cases), f"{name}: a case without a why"
        unknown = {(c["id"], k) for c in cases for k in c if k not in KEYS[name]}
        assert not unknown, f"{name}: unknown keys (typos?) {sorted(unknown)}"
    print("\ncorpus cases:")
    for name, n in counts.items():
        print(f"  {n:4d}  {name}")
    print(f"  {len(TOKEN_PARAMS):4d}  token x target runs")
    assert all(n >= 25 for n in counts.values())


# --- HTTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["direct", "gateway"])
@pytest.mark.parametrize("case", AUTH_CASES, ids=ids(AUTH_CASES))
def test_auth_endpoint(stack: Stack, case: dict[str, Any], via: str) -> None:
    check_http(stack, case, stack.auth if via == "direct" else stack.gateway, None)


@pytest.mark.parametrize("case", GATEWAY_CASES, ids=ids(GATEWAY_CASES))
def test_gateway_endpoint(stack: Stack, case: dict[str, Any]) -> None:
    check_http(stack, case, stack.gateway, ATTACKER)


# --- WebSocket ----------------------------------------------------------------------------------


def ws_payload(case: dict[str, Any], ph: dict[str, str]) -> str | bytes:
    if "send_json" in case:
        return json.dumps(expand(case["send_json"], ph), ensure_ascii=False)
    if "send_hex" in case:
        return bytes.fromhex(case["send_hex"])
    if "send_parts" in case:
        return parts(case["send_parts"], ph)
    return fill(case["send"], ph)


async def recv(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def expect_close(ws: Any, code: int, needle: str, seen: list[Any]) -> None:
    """The server closes with ``code``; frames before the close are collected in ``seen``."""
    try:
        for _ in range(50):
            seen.append(await recv(ws))
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        assert exc.rcvd.code == code, (exc.rcvd.code, exc.rcvd.reason)
        assert needle in exc.rcvd.reason, (needle, exc.rcvd.reason)
        return
    except TimeoutError:
        pass
    raise AssertionError(f"expected a close {code}, got frames {seen!r}")


async def still_usable_as_attacker(ws: Any, seen: list[Any]) -> None:
    """After an error: a ping is answered, and the session is still the attacker's own."""
    await ws.send(json.dumps({"op": "ping", "id": "after"}))
    while (msg := await recv(ws)) != {"type": "pong", "id": "after"}:
        seen.append(msg)
    await ws.send(json.dumps({"op": "subscribe", "channels": ["orders"], "id": "mine"}))
    frames = [await recv(ws), await recv(ws)]
    seen.extend(frames)
    snap = next(f for f in frames if f["type"] == "snapshot")
    assert snap["data"] == [], f"the orders snapshot is not the attacker's (empty) one: {snap}"


async def ws_case(s: Stack, case: dict[str, Any]) -> None:
    ph = s.ph
    phase = case.get("phase", "open")
    payload = ws_payload(case, ph) if phase != "header" else ""
    sent = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
    seen: list[Any] = []
    headers = {k: fill(v, ph) for k, v in case.get("headers", {}).items()}
    try:
        async with websockets.connect(
            s.settings.ws_url, additional_headers=headers, max_size=2**22, open_timeout=10
        ) as ws:
            if phase == "header":
                await expect_close(ws, case["code"], case.get("needle", ""), seen)
                return
            if phase == "open":
                await ws.send(json.dumps({"op": "auth", "token": s.tokens[ATTACKER]}))
                welcome = await recv(ws)
                assert welcome["type"] == "welcome" and welcome["email"] == ATTACKER, welcome
            for _ in range(case.get("repeat", 1)):
                await ws.send(payload)
            if case["expect"] == "close":
                await expect_close(ws, case["code"], case.get("needle", ""), seen)
                return
            needle = case.get("needle", "")
            if case.get("repeat", 1) > 1:  # a flood: pongs first, then rate-limit errors; then quiet
                with contextlib.suppress(TimeoutError):
                    while True:
                        seen.append(await recv(ws, 1.0))
                reply = next((f for f in seen if f.get("type") == "error"), {"type": "none"})
            else:
                reply = await recv(ws)
                seen.append(reply)
            if case["expect"] == "error":
                assert reply["type"] == "error", f"expected an error frame, got {reply}"
            else:
                assert reply["type"] == "order_result", f"expected an order_result frame, got {reply}"
                assert 400 <= reply["code"] < 500, f"the order was not refused: {reply}"
            check_error_doc(reply, needle, case["id"])
            await still_usable_as_attacker(ws, seen)
    finally:
        never_reveals(json.dumps(seen), sent + json.dumps(headers))


@pytest.mark.parametrize("case", WS_CASES, ids=ids(WS_CASES))
def test_websocket_frame(stack: Stack, case: dict[str, Any]) -> None:
    asyncio.run(asyncio.wait_for(ws_case(stack, case), 30))


# --- tokens -------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(kind: str, signer: TokenSigner, attacker_token: str) -> str | None:
    """The Authorization header value of a forged or broken token (None: no header)."""
    now = int(time.time())
    victim = {
        "sub": VICTIM,
        "email": VICTIM,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "jti": "forged",
    }
    header, payload, sig = attacker_token.split(".")
    victim_payload = b64(json.dumps(victim).encode())
    stranger = Ed25519PrivateKey.generate()

    def none(alg: str) -> str:
        return b64(json.dumps({"alg": alg, "typ": "JWT", "kid": signer.kid}).encode())

    def stranger_sign(headers: dict[str, Any]) -> str:
        head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT", **headers}).encode())
        return f"{head}.{victim_payload}.{b64(stranger.sign(f'{head}.{victim_payload}'.encode()))}"

    if kind == "no_header":
        return None
    if kind == "basic_scheme":
        return "Basic " + base64.b64encode(f"{VICTIM}:{PASSWORD}".encode()).decode()
    raw_pub = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode())
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    impostor = TokenSigner(Ed25519PrivateKey.generate())
    impostor.kid = signer.kid
    tokens = {
        "garbage": "not-a-jwt",
        "two_segments": f"{header}.{payload}",
        "four_segments": f"{attacker_token}.e30",
        "too_long": "a" * 5000,
        "alg_none": f"{none('none')}.{victim_payload}.",
        "alg_none_upper": f"{none('NONE')}.{victim_payload}.",
        "alg_none_with_signature": f"{none('none')}.{victim_payload}.{sig}",
        "hs256_public_key": (
            f"{hs_header}.{victim_payload}."
            + b64(hmac.new(raw_pub, f"{hs_header}.{victim_payload}".encode(), hashlib.sha256).digest())
        ),
        "tampered_payload": f"{header}.{victim_payload}.{sig}",
        "tampered_signature": f"{header}.{payload}.{flipped}",
        "truncated_signature": f"{header}.{payload}.{sig[: len(sig) // 2]}",
        "expired": signer.sign({**victim, "iat": now - 4000, "nbf": now - 4000, "exp": now - 3600}),
        "not_yet_valid": signer.sign({**victim, "nbf": now + 3600, "exp": now + 7200}),
        "wrong_audience": signer.sign({**victim, "aud": "elsewhere"}),
        "wrong_issuer": signer.sign({**victim, "iss": "evil"}),
        "missing_exp": signer.sign({k: v for k, v in victim.items() if k != "exp"}),
        "subject_mismatch": signer.sign({**victim, "sub": ATTACKER}),
        "other_key": stranger_sign({"kid": "stranger"}),
        "other_key_same_kid": impostor.sign(victim),
        "embedded_jwk": stranger_sign({"jwk": public_jwk(stranger.public_key())}),
        "jku_header": stranger_sign({"jku": "http://127.0.0.1:9/jwks.json", "kid": "attacker"}),
        "kid_traversal": stranger_sign({"kid": "../../secrets/jwt-ed25519.pem"}),
        "kid_object": stranger_sign({"kid": {"$ne": ""}}),
    }
    return f"Bearer {tokens[kind]}"


async def token_ws(s: Stack, target: str, value: str, reason: str) -> None:
    seen: list[Any] = []
    headers = {"Authorization": value} if target == "ws-header" else {}
    token = value.removeprefix("Bearer ")
    async with websockets.connect(s.settings.ws_url, additional_headers=headers, open_timeout=10) as ws:
        if target == "ws-header":
            await expect_close(ws, 4401, reason, seen)
        elif target == "ws-first":
            await ws.send(json.dumps({"op": "auth", "token": token}))
            await expect_close(ws, 4401, reason, seen)
        else:
            await ws.send(json.dumps({"op": "auth", "token": s.tokens[ATTACKER]}))
            assert (await recv(ws))["email"] == ATTACKER
            await ws.send(json.dumps({"op": "auth", "token": token}))
            reply = await recv(ws)
            seen.append(reply)
            assert reply["type"] == "error", reply
            check_error_doc(reply, reason, target)
            await still_usable_as_attacker(ws, seen)
    never_reveals(json.dumps(seen), "")


@pytest.mark.parametrize(("case", "target"), TOKEN_PARAMS, ids=[f"{c['id']}-{t}" for c, t in TOKEN_PARAMS])
def test_token_is_refused(stack: Stack, case: dict[str, Any], target: str) -> None:
    value = forge(case["make"], current_signer(stack.settings), stack.tokens[ATTACKER])
    reason = case["reason"]
    if target.startswith("ws-"):
        assert value is not None
        asyncio.run(asyncio.wait_for(token_ws(stack, target, value, reason), 30))
        return
    method, path, body = {
        "rest-prices": ("GET", "/api/v1/prices", None),
        "rest-balances": ("GET", "/api/v1/balances", None),
        "rest-order": ("POST", "/api/v1/orders", {"market": "TATA_INR", "side": "sell", "qty": "1", "price": "99.50"}),
        "rest-cancel": ("DELETE", f"/api/v1/orders/{stack.victim_order}?market=TATA_INR", None),
        "auth-me": ("GET", "/auth/me", None),
    }[target]
    headers = {"Authorization": value} if value is not None else {}
    resp = stack.http.request(method, stack.gateway + path, json=body, headers=headers)

    assert resp.status_code == 401, resp.text
    assert resp.headers.get("www-authenticate") == "Bearer"
    check_error_doc(resp.json(), reason, target)
    never_reveals(resp.text, "")


# --- CLI ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_results(stack: Stack) -> dict[str, tuple[int, str, str]]:
    """Every CLI case as a real ``python -m stockctl`` process, three at a time."""

    def one(case: dict[str, Any]) -> tuple[int, str, str]:
        scratch = stack.tmp / "cli" / case["id"]
        scratch.mkdir(parents=True, exist_ok=True)
        for name, content in case.get("files", {}).items():
            (scratch / name).write_bytes(content.encode())
        ph = {**stack.ph, "dir": str(scratch)}
        args = [expand(a, ph) for a in case["args"]]
        env = stack.cli_env
        if case.get("home") == "fresh":  # `up` cases: a home of their own, free ports
            env = {
                **cli_env(scratch / "home", scratch / "config"),
                **{
                    f"STOCKCTL_{p}": str(infra.free_port())
                    for p in ("NATS_PORT", "NATS_MONITOR_PORT", "REDIS_PORT", "GATEWAY_PORT", "WS_PORT", "AUTH_PORT")
                },
            }
        result = run_cli(args, env, case.get("stdin", ""))
        if case.get("home") == "fresh" and result[0] == 0:
            run_cli(["down"], env)  # it started after all: leave nothing behind
        return result

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(ids(CLI_CASES), pool.map(one, CLI_CASES), strict=True))


@pytest.mark.parametrize("case", CLI_CASES, ids=ids(CLI_CASES))
def test_cli_arguments(cli_results: dict[str, tuple[int, str, str]], case: dict[str, Any]) -> None:
    code, out, err = cli_results[case["id"]]

    assert "Traceback" not in out + err, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line on stderr:\n{err}"
    assert code == case.get("exit", code) and code != 0, (code, err)
    assert case.get("needle", "") in lines[0], lines[0]


# --- CSV replay ---------------------------------------------------------------------------------

GOOD_FIRST = "2024-01-02T10:00:00Z,IBM,10.5"
GOOD_LAST = "2024-01-02T10:00:05Z,IBM,10.75,100"


@pytest.mark.parametrize("case", CSV_CASES, ids=ids(CSV_CASES))
def test_csv_replay_line(tmp_path: Path, case: dict[str, Any]) -> None:
    line = parts(case["line"], {}) if isinstance(case["line"], list) else case["line"]
    head = f"timestamp,symbol,price,volume\n{GOOD_FIRST}\n{case.get('before', '')}"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(f"{head}{line}\n{GOOD_LAST}\n".encode())
    line_no = head.count("\n") + 1

    replayed = []
    with pytest.raises(ReplayError) as info:
        for row in read_rows(bad):
            replayed.append(row.line)

    message = str(info.value)
    assert message.startswith(f"bad.csv:{line_no}: "), message[:300]
    assert case["needle"] in message, message[:300]
    assert "\n" not in message and len(message) < 400, message[:300]
    # The rows around it are fine: before it they replayed, and without it the file replays whole.
    clean = tmp_path / "clean.csv"
    clean.write_bytes(f"{head}{GOOD_LAST}\n".encode())
    assert validate(clean) == len(replayed) + 1
    assert replayed == [r.line for r in read_rows(clean)][:-1]


# --- after the corpus ---------------------------------------------------------------------------


def test_state_and_accounts_are_unchanged(stack: Stack) -> None:
    after = snapshot(stack)

    for key in stack.before:
        assert after[key] == stack.before[key], f"{key} changed:\nbefore {stack.before[key]}\nafter  {after[key]}"
    victim_open = [o["order_id"] for o in after[VICTIM]["open"]]
    assert stack.victim_order in victim_open
    print(f"\nunchanged after the corpus: {', '.join(sorted(after))}")


def test_public_trades_name_nobody(stack: Stack) -> None:
    """After the corpus (this changes state): the bystander watches the attacker trade with the victim."""
    order = {"market": "JIO_INR", "side": "buy", "qty": "1", "price": "250"}

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with websockets.connect(stack.settings.ws_url) as ws:
            await ws.send(json.dumps({"op": "auth", "token": stack.tokens[BYSTANDER]}))
            await ws.send(json.dumps({"op": "subscribe", "channels": ["trades:JIO_INR"], "id": "s"}))
            frames = [await recv(ws)]
            while frames[-1].get("type") != "subscribed":
                frames.append(await recv(ws))
            resp = await asyncio.to_thread(stack.call, ATTACKER, "POST", "/api/v1/orders", json=order)
            while frames[-1].get("type") != "trade":
                frames.append(await recv(ws))
            return resp.json(), frames

    doc, frames = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert doc["status"] == "filled", doc
    listed = stack.ok(BYSTANDER, "GET", "/api/v1/trades/JIO_INR")
    seen = json.dumps([frames, listed])
    for who in (VICTIM, ATTACKER, VICTIM_COID):
        assert who not in seen, f"a public trade names {who}: {seen[:500]}"
    public = {"event", "seq", "ts", "market", "trade_id", "price", "qty", "taker_side"}  # no users, orders, fees
    assert set(frames[-1]["data"]) == public, frames[-1]
    assert set(listed[-1]) == public | {"ts_ms", "time"}, listed[-1]  # REST adds the time in ms and RFC 3339
    assert (listed[-1]["qty"], listed[-1]["taker_side"]) == ("1", "buy")
    theirs = stack.ok(VICTIM, "GET", "/api/v1/fills")  # the owners still see their own fills
    assert [(f["market"], f["liquidity"], f["qty"]) for f in theirs][-1] == ("JIO_INR", "maker", "1")


# --- fuzzing from the OpenAPI specs -------------------------------------------------------------

FUZZ_TARGETS = {
    # name: (spec on, base URL of, token, examples per operation and generation mode)
    "gateway-with-token": ("gateway", "gateway", True, 40),
    "gateway-anonymous": ("gateway", "gateway", False, 10),
    "auth-direct": ("auth", "auth", True, 40),
    "auth-through-gateway": ("auth", "gateway", True, 20),
}


def fuzz_operation(
    op: Any,
    mode: Any,
    base: str,
    headers: dict[str, str],
    examples: int,
    statuses: Counter[int],
    conformance: list[Any] | None = None,
) -> str | None:
    """Up to ``examples`` requests generated for one operation; the first failure, or None.
    With ``conformance`` (schemathesis checks), each answer is also checked against the spec."""
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hsettings
    from hypothesis.errors import Unsatisfiable

    @hsettings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        resp = case.call(base_url=base, headers=headers, timeout=15)
        statuses[resp.status_code] += 1
        if conformance:
            case.validate_response(resp, checks=conformance, headers=headers)
        where = f"{op.label} ({mode.value}): {case.as_curl_command(headers=headers)}"
        assert resp.status_code < 500, f"{where} -> {resp.status_code} {resp.content[:300]!r}"
        if resp.status_code >= 400:
            check_error_doc(json.loads(resp.content), "", where)
        elif resp.content:
            json.loads(resp.content)
        never_reveals(resp.content.decode(errors="replace"), f"{resp.request.url} {resp.request.body!r}")

    try:
        fuzz()
    except Unsatisfiable:
        return None  # e.g. no negative input exists for an operation without parameters
    except AssertionError as exc:
        return str(exc).split("\n")[0][:600]
    except Exception as exc:  # schemathesis' failure group: the answer does not match the spec
        return f"{op.label} ({mode.value}): {str(exc)[:600]}"
    return None


@pytest.mark.parametrize("target", list(FUZZ_TARGETS))
def test_fuzz_openapi_spec(stack: Stack, target: str) -> None:
    import schemathesis
    from schemathesis import checks

    spec_on, base_on, with_token, examples = FUZZ_TARGETS[target]
    # The gateway's answers are checked against its spec (issue 14): shapes, statuses, headers.
    conformance = (
        [
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
        ]
        if spec_on == "gateway"
        else None
    )
    spec_url = f"{stack.gateway}/openapi.json" if spec_on == "gateway" else f"{stack.auth}/auth/openapi.json"
    base = stack.gateway if base_on == "gateway" else stack.auth
    headers = {"Authorization": f"Bearer {stack.tokens[FUZZER]}"} if with_token else {}
    schema = schemathesis.openapi.from_url(spec_url)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = 0

    for result in schema.get_all_operations():
        operations += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            failure = fuzz_operation(result.ok(), mode, base, headers, examples, statuses, conformance)
            if failure is not None:
                failures.append(failure)

    print(f"\nfuzz {target}: {operations} operations, {sum(statuses.values())} requests, statuses {dict(statuses)}")
    assert operations >= (5 if spec_on == "auth" else 15)
    assert sum(statuses.values()) >= operations * examples // 2
    assert not failures, "\n".join(failures)
