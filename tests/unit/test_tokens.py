"""Access tokens, pure: Ed25519 keys in a temp dir, sign and verify, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockctl.auth.tokens import AUDIENCE, ISSUER, KEY_FILE, TokenError, TokenSigner, TokenVerifier

EMAIL = "ada@example.com"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / KEY_FILE


@pytest.fixture
def signer(key_path: Path) -> TokenSigner:
    return TokenSigner.load_or_create(key_path, ttl_s=300)


@pytest.fixture
def verifier(signer: TokenSigner) -> TokenVerifier:
    return TokenVerifier(signer.jwks())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(doc: dict) -> str:
    return b64(json.dumps(doc, separators=(",", ":")).encode())


def claims(**overrides: object) -> dict:
    now = int(time.time())
    doc: dict[str, object] = {
        "sub": EMAIL,
        "email": EMAIL,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "jti": "j1",
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    return info.value.reason


# --- the happy path --------------------------------------------------------------------------


def test_an_issued_token_verifies_to_its_claims(signer: TokenSigner, verifier: TokenVerifier) -> None:
    now = int(time.time())

    token, exp = signer.issue(EMAIL, now=now)
    got = verifier.verify(token)

    assert exp == now + 300
    assert (got.email, got.exp, got.iat, got.kid) == (EMAIL, now + 300, now, signer.kid)
    assert len(got.jti) >= 16


def test_every_token_has_its_own_jti(signer: TokenSigner, verifier: TokenVerifier) -> None:
    jtis = {verifier.verify(signer.issue(EMAIL)[0]).jti for _ in range(20)}

    assert len(jtis) == 20


def test_the_key_file_is_private_and_the_same_key_is_loaded_again(key_path: Path, signer: TokenSigner) -> None:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")

    again = TokenSigner.load_or_create(key_path)

    assert again.kid == signer.kid
    assert list(key_path.parent.iterdir()) == [key_path]  # no temp files left behind


def test_a_key_file_readable_by_others_is_made_private(key_path: Path, signer: TokenSigner) -> None:
    key_path.chmod(0o644)

    TokenSigner.load_or_create(key_path)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_racing_creators_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "race" / KEY_FILE
    kids: list[str] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        kids.append(TokenSigner.load_or_create(path).kid)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(kids) == 8 and len(set(kids)) == 1
    assert TokenSigner.load_or_create(path).kid == kids[0]


def test_a_file_holding_another_kind_of_key_is_refused(key_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key_path.parent.mkdir(parents=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.write_bytes(pem)

    with pytest.raises(TokenError, match="not an Ed25519 private key"):
        TokenSigner.load_or_create(key_path)


def test_the_jwks_holds_the_public_key_only(signer: TokenSigner) -> None:
    (jwk,) = signer.jwks()["keys"]

    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == "EdDSA"
    assert jwk["kid"] == signer.kid
    assert "d" not in jwk
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert jwk["x"] == b64(raw)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_is_refused(verifier: TokenVerifier, signer: TokenSigner, alg: str) -> None:
    token = f"{b64_json({'alg': alg, 'typ': 'JWT', 'kid': signer.kid})}.{b64_json(claims())}."

    assert reason(verifier, token) == "unsigned token"


def test_hs256_keyed_with_the_public_key_is_refused(verifier: TokenVerifier, signer: TokenSigner) -> None:
    pub = signer.public_key
    secrets_an_attacker_knows = [
        pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        signer.jwks()["keys"][0]["x"].encode(),
    ]
    for secret in secrets_an_attacker_knows:
        signing_input = f"{b64_json({'alg': 'HS256', 'typ': 'JWT', 'kid': signer.kid})}.{b64_json(claims())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()

        assert reason(verifier, f"{signing_input}.{b64(mac)}").startswith("unsupported algorithm")


def test_a_changed_payload_fails_the_signature(verifier: TokenVerifier, signer: TokenSigner) -> None:
    header, _, sig = signer.issue(EMAIL)[0].split(".")
    forged = b64_json(claims(sub="eve@example.com", email="eve@example.com"))

    assert reason(verifier, f"{header}.{forged}.{sig}") == "bad signature"


def test_a_changed_signature_is_refused(verifier: TokenVerifier, signer: TokenSigner) -> None:
    header, payload, sig = signer.issue(EMAIL)[0].split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]

    assert reason(verifier, f"{header}.{payload}.{flipped}") == "bad signature"


def test_an_expired_token_is_refused(verifier: TokenVerifier, signer: TokenSigner) -> None:
    now = int(time.time())

    expired = signer.sign(claims(iat=now - 4000, nbf=now - 4000, exp=now - 3600))
    just_within_leeway = signer.sign(claims(iat=now - 400, nbf=now - 400, exp=now - 2))

    assert reason(verifier, expired) == "token expired"
    assert verifier.verify(just_within_leeway).email == EMAIL


def test_a_token_from_the_future_is_refused(verifier: TokenVerifier, signer: TokenSigner) -> None:
    now = int(time.time())

    assert reason(verifier, signer.sign(claims(nbf=now + 3600))) == "token not yet valid"


def test_wrong_audience_and_issuer_are_refused(verifier: TokenVerifier, signer: TokenSigner) -> None:
    assert reason(verifier, signer.sign(claims(aud="someone-else"))) == "wrong audience"
    assert reason(verifier, signer.sign(claims(iss="someone-else"))) == "wrong issuer"


def test_a_key_the_verifier_does_not_know_is_refused(verifier: TokenVerifier) -> None:
    stranger = TokenSigner(Ed25519PrivateKey.generate())

    assert reason(verifier, stranger.issue(EMAIL)[0]) == "unknown key"


def test_another_key_pair_claiming_our_kid_fails_the_signature(verifier: TokenVerifier, signer: TokenSigner) -> None:
    impostor = TokenSigner(Ed25519PrivateKey.generate())
    impostor.kid = signer.kid

    assert reason(verifier, impostor.issue(EMAIL)[0]) == "bad signature"


def test_a_token_without_a_kid_is_refused(verifier: TokenVerifier, signer: TokenSigner) -> None:
    import jwt

    token = jwt.encode(claims(), signer._key, algorithm="EdDSA")

    assert reason(verifier, token) == "unknown key"


@pytest.mark.parametrize("missing", ["exp", "jti", "aud", "sub"])
def test_a_missing_claim_is_refused(verifier: TokenVerifier, signer: TokenSigner, missing: str) -> None:
    assert reason(verifier, signer.sign(claims(**{missing: None}))) == f"missing claim {missing}"


def test_a_subject_that_is_not_the_email_is_refused(verifier: TokenVerifier, signer: TokenSigner) -> None:
    assert reason(verifier, signer.sign(claims(sub="eve@example.com"))) == "bad subject"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 5000, "eyJhbGciOiJFZERTQSJ9..", "...."])
def test_garbage_is_refused(verifier: TokenVerifier, token: str) -> None:
    assert reason(verifier, token) in {"empty token", "token too long", "malformed token", "unknown key"}


@pytest.mark.parametrize(
    "jwks",
    [
        {},
        {"keys": []},
        {"keys": "nope"},
        {"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "dG9vIHNob3J0"}]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "A" * 43, "use": "enc"}]},
    ],
)
def test_a_jwks_without_a_usable_key_is_refused(jwks: dict) -> None:
    with pytest.raises(TokenError, match=r"no usable Ed25519 key|no keys list"):
        TokenVerifier(jwks)


def test_a_verifier_for_another_audience_refuses_our_tokens(signer: TokenSigner) -> None:
    other = TokenVerifier(signer.jwks(), audience="billing")

    assert reason(other, signer.issue(EMAIL)[0]) == "wrong audience"


async def test_fetching_keys_from_nowhere_is_a_token_error() -> None:
    with pytest.raises(TokenError, match=r"cannot fetch JWKS from http://127\.0\.0\.1:9/"):
        await TokenVerifier.fetch("http://127.0.0.1:9", timeout=2)
