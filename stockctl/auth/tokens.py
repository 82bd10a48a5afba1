"""Access tokens: short-lived JWTs signed by the auth daemon with Ed25519 (EdDSA).

Only the auth daemons hold the private keys (a ring in Redis, wrapped by a key in
``secrets/``: :mod:`stockctl.auth.keyring`); they publish the public keys as a JWKS document,
and every other daemon verifies tokens with :class:`TokenVerifier` built from that document
(kept fresh by :mod:`stockctl.auth.jwks`). Verification accepts EdDSA and nothing
else, so ``alg: none`` and "HS256 keyed with the public key" tokens are refused before any
signature check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stockctl.auth.secretfile import create_once

AUDIENCE = "stockctl"
"""``aud`` of every access token: the stockctl gateway and daemons."""

ISSUER = "stockctl-auth"
"""``iss`` of every access token."""

ALGORITHM = "EdDSA"
KEY_FILE = "jwt-ed25519.pem"
"""The one key file of installs before the key ring, inside ``settings.secrets_dir``."""

LEEWAY_S = 5
"""Clock skew tolerated on ``exp``/``nbf``/``iat`` between hosts."""

MAX_TOKEN_CHARS = 4096
"""Longer strings are refused before any parsing."""

REQUIRED_CLAIMS = ("sub", "email", "iat", "nbf", "exp", "aud", "iss", "jti")


class TokenError(Exception):
    """A token (or key set) that cannot be trusted; ``reason`` is short and readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    """What a verified access token says."""

    email: str
    exp: int
    jti: str
    iat: int = 0
    kid: str = ""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """``kid`` of a public key: the first 16 base64url chars of the SHA-256 of its raw bytes."""
    return _b64url(hashlib.sha256(_raw_public(key)).digest())[:16]


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(_raw_public(key)),
        "kid": key_id(key),
        "alg": ALGORITHM,
        "use": "sig",
    }


# --- signing (auth daemon only) -----------------------------------------------------------


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The private key at ``path``, created (mode 0600, atomically) if missing.

    A new key is written to a private temp file and hard-linked into place, so a reader
    never sees a half-written file and two processes racing to create it end up sharing
    the one that won.
    """
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        create_once(path, pem.decode())
    return load_key(path)


def load_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path`` (made private if others could read it)."""
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # never leave a signing key readable by others
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TokenError(f"{path} is not an Ed25519 private key")
    return key


class TokenSigner:
    """Issues access tokens with one Ed25519 key; publishes its public half as JWKS."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        ttl_s: int = 300,
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
    ) -> None:
        self._key = self.private_key = private_key
        self.public_key = private_key.public_key()
        self.kid = key_id(self.public_key)
        self.ttl_s, self.audience, self.issuer = ttl_s, audience, issuer

    @classmethod
    def load_or_create(cls, path: Path, ttl_s: int = 300) -> TokenSigner:
        return cls(load_or_create_key(path), ttl_s)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [public_jwk(self.public_key)]}

    def sign(self, claims: dict[str, Any]) -> str:
        """Encode ``claims`` as they are (no defaults added) with this key."""
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def issue(self, email: str, now: int | None = None) -> tuple[str, int]:
        """A fresh access token for ``email`` and its expiry (unix seconds)."""
        now = int(time.time()) if now is None else now
        exp = now + self.ttl_s
        claims = {
            "sub": email,
            "email": email,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "aud": self.audience,
            "iss": self.issuer,
            "jti": secrets.token_urlsafe(16),
        }
        return self.sign(claims), exp


# --- verifying (everyone) -------------------------------------------------------------------


def _parse_jwks(doc: Any) -> dict[str, Ed25519PublicKey]:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise TokenError("bad JWKS document: no keys list")
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALGORITHM) != ALGORITHM:
            continue
        kid, x = jwk.get("kid"), jwk.get("x")
        if not isinstance(kid, str) or not isinstance(x, str):
            continue
        try:
            keys[kid] = Ed25519PublicKey.from_public_bytes(_b64url_decode(x))
        except (ValueError, binascii.Error):
            continue
    if not keys:
        raise TokenError("bad JWKS document: no usable Ed25519 key")
    return keys


class TokenVerifier:
    """Verifies access tokens against the public keys of a JWKS document."""

    def __init__(self, jwks: dict, audience: str = AUDIENCE, issuer: str = ISSUER) -> None:
        self.keys = _parse_jwks(jwks)
        self.audience, self.issuer = audience, issuer

    @classmethod
    async def fetch(cls, auth_url: str, timeout: float = 5.0) -> TokenVerifier:
        """Build a verifier from ``{auth_url}/.well-known/jwks.json``; TokenError if that fails."""
        import httpx

        url = auth_url.rstrip("/") + "/.well-known/jwks.json"
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                resp = await client.get(url)
                resp.raise_for_status()
                doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenError(f"cannot fetch JWKS from {url}: {exc.__class__.__name__}: {exc}") from None
        return cls(doc)

    def verify(self, token: str) -> Claims:
        """The claims of a valid token; :class:`TokenError` with the reason otherwise."""
        if not isinstance(token, str) or not token:
            raise TokenError("empty token")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenError("unsigned token")
        if alg != ALGORITHM:
            raise TokenError(f"unsupported algorithm (only {ALGORITHM} is accepted)")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidSignatureError:
            raise TokenError("bad signature") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong issuer") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not yet valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"missing claim {exc.claim}") from None
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        email, sub, jti, exp, iat = (claims.get(k) for k in ("email", "sub", "jti", "exp", "iat"))
        if not isinstance(email, str) or not email or email != sub:
            raise TokenError("bad subject")
        if not isinstance(jti, str) or not isinstance(exp, int) or not isinstance(iat, int):
            raise TokenError("malformed claims")
        return Claims(email=email, exp=exp, jti=jti, iat=iat, kid=kid)
