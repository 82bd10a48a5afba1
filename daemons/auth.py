"""auth: accounts, logins and access tokens over HTTP (FastAPI on uvicorn).

Endpoints (all JSON; OpenAPI at ``/auth/openapi.json``, docs at ``/auth/docs``):

* ``POST /auth/register`` {email, password} -> 201 tokens
* ``POST /auth/login`` {email, password} -> 200 tokens
* ``POST /auth/refresh`` {refresh_token} -> 200 tokens with a new refresh token
* ``POST /auth/logout`` {refresh_token} -> 204
* ``GET /auth/me`` (Bearer) -> {email, created, disabled}
* ``GET /.well-known/jwks.json`` and ``GET /auth/jwks.json``: the public signing keys
* ``GET /healthz``

Failed logins are throttled per email and per client address, registrations per client
address (429 with Retry-After). The client address is the socket peer; ``X-Forwarded-For``
counts only from a proxy in ``trusted_proxies`` or from this instance's gateway, which sends
the secret of ``secrets/gateway-proxy.key`` (:mod:`stockctl.proxies`).

Every error is ``{"error": code, "detail": reason}`` with a 4xx status, except 503 while
Redis is unreachable. Users, sessions and throttles live in Redis (:mod:`stockctl.auth.users`),
and so does the ring of Ed25519 signing keys that every auth instance shares (private halves
wrapped by ``secrets/jwt-keyring.key``: :mod:`stockctl.auth.keyring`). Each instance re-reads
the ring every ``signing_key_reload_s``, so a key rotated by ``stockctl auth rotate-key`` is
signed with everywhere without a restart; JWKS lists every key not yet retired.

The daemon drives ``uvicorn.Server`` itself, as a child task, on a socket it binds first:
uvicorn's own signal handling is switched off, and SIGINT/SIGTERM stop the daemon, which asks
uvicorn to finish in-flight requests and stop (exit 0). A server that stops on its own is a
dead child task: the daemon exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockctl.auth.keyring import KeyRingError, LiveRing
from stockctl.auth.proxies import PROXY_SECRET_HEADER, TrustedProxies, load_proxy_secret, secret_matches
from stockctl.auth.tokens import TokenError, TokenSigner
from stockctl.auth.users import (
    LOOKALIKE,
    MAX_PASSWORD_CHARS,
    InvalidEmail,
    Refresh,
    UserStore,
    WeakPassword,
    check_password_policy,
    hash_password,
    needs_rehash,
    normalise_email,
    verify_password,
)
from stockctl.runtime.connections import open_redis
from stockctl.runtime.daemon import Daemon, main
from stockctl.runtime.http import BodyLimit, SignalFreeServer
from stockctl.runtime.ops import HttpMetrics
from stockctl.runtime.retry import pause
from stockctl.runtime.status import StateLog, StatusFile
from stockctl.settings import Settings
from stockctl.wire.strictjson import duplicate_key

log = logging.getLogger("stockctl.auth")

MAX_BODY_BYTES = 16 * 1024
"""Larger request bodies get 413 before they are parsed."""

JWKS_CACHE = "public, max-age=30"
"""Short: a cache must not hide a rotated key for long (verifiers also refetch on an unknown kid)."""


# --- errors ------------------------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error answer: status, short code, readable detail."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def error_body(error: str, detail: str) -> bytes:
    return json.dumps({"error": error, "detail": detail}, separators=(",", ":")).encode()


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


# --- wire models ----------------------------------------------------------------------------


def _unicode_text(value: str) -> str:
    """JSON may escape lone surrogates (``"\\ud800"``); they cannot be encoded, hashed or stored."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_unicode_text)]


class CredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    email: Text = Field(description="Email address; stored lower-cased.", examples=["ada@example.com"])
    password: Text = Field(description="10-128 characters, not a common password, not the email.")


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    refresh_token: Text


class TokensOut(BaseModel):
    email: str
    access_token: str = Field(description="EdDSA-signed JWT; send as `Authorization: Bearer ...`.")
    refresh_token: str = Field(description="Opaque; spend it at /auth/refresh for a new pair (single use).")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class MeOut(BaseModel):
    email: str
    created: str = Field(description="Registration time, ISO 8601 UTC.")
    disabled: bool


class ErrorOut(BaseModel):
    error: str = Field(description="Short machine-readable code.")
    detail: str = Field(description="What went wrong, readable.")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


# --- the service ----------------------------------------------------------------------------


class AuthService:
    """Everything the endpoints share: settings, store, keys, counters, Redis health."""

    def __init__(
        self, settings: Settings, store: UserStore, ring: LiveRing, status: StatusFile, proxy_secret: str = ""
    ) -> None:
        self.s, self.store, self.ring, self.status = settings, store, ring, status
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.proxy_secret = proxy_secret  # the gateway of this state dir proves itself with it
        # Argon2id takes ~64 MiB and tens of ms per hash: bound how many run at once.
        self.hash_slots = asyncio.Semaphore(max(2, os.cpu_count() or 2))
        self._dummy_hash: asyncio.Future[str] | None = None
        self.redis_up = True
        self.redis_state = StateLog(log, "Redis")

    async def prepare(self) -> None:
        """Start hashing the dummy password, in a thread: readiness does not wait for it.

        One Argon2id hash is 0.1-0.5 s of CPU, which ``up`` waited for (and the gateway,
        for this daemon's keys); only a login for an unknown email needs it.
        """
        self._dummy_hash = asyncio.ensure_future(asyncio.to_thread(hash_password, os.urandom(16).hex()))

    async def dummy_hash(self) -> str:
        """The hash an unknown email's password is checked against, so it takes as long as a known one's."""
        if self._dummy_hash is None:
            await self.prepare()
        assert self._dummy_hash is not None
        return await asyncio.shield(self._dummy_hash)  # a cancelled login leaves it for the next

    async def hash(self, password: str) -> str:
        async with self.hash_slots:
            return await asyncio.to_thread(hash_password, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self.hash_slots:
            return await asyncio.to_thread(verify_password, password_hash, password)

    # --- Redis health ---------------------------------------------------------------------

    def need_redis(self) -> None:
        if not self.redis_up:
            raise ApiError(
                503, "unavailable", "the account store is unreachable; try again shortly", {"Retry-After": "2"}
            )

    def redis_failed(self, exc: Exception) -> None:
        self.redis_up = False
        self.redis_state.set("unreachable", f"{exc.__class__.__name__}: {exc}")
        self.status.incr("redis_errors")

    async def watch_redis(self, stop: asyncio.Event) -> None:
        """Ping Redis every second; requests fail fast with 503 while it is down."""
        while not stop.is_set():
            try:
                await self.store.r.ping()
            except Exception as exc:
                self.redis_failed(exc)
            else:
                self.redis_up = True
                self.redis_state.set("ok")
            self.status.info["redis"] = "ok" if self.redis_up else "unreachable"
            await pause(1.0, stop)

    # --- helpers ----------------------------------------------------------------------------

    @property
    def signer(self) -> TokenSigner:
        """The current key's signer (the ring's reload swaps it)."""
        assert self.ring.signer is not None
        return self.ring.signer

    @staticmethod
    def email(text: str) -> str:
        try:
            return normalise_email(text)
        except InvalidEmail as exc:
            raise ApiError(422, "invalid_email", f"email: {exc}") from None

    async def tokens_for(self, email: str) -> TokensOut:
        refresh = await self.store.new_session(email, self.s.refresh_token_ttl_s)
        if refresh is None:
            raise ApiError(403, "account_disabled", "account disabled; ask the operator to enable it")
        now = int(time.time())
        access, exp = self.signer.issue(email, now)
        return TokensOut(email=email, access_token=access, refresh_token=refresh, expires_in=exp - now)

    # --- endpoints --------------------------------------------------------------------------

    def client_ip(self, peer: str | None, forwarded: list[str], secret: str | None) -> str:
        """The address throttles count: ``X-Forwarded-For`` only from a trusted proxy or the gateway."""
        via_gateway = bool(self.proxy_secret) and secret_matches(self.proxy_secret, secret)
        return self.proxies.client_address(peer, forwarded, peer_trusted=via_gateway)

    async def register(self, body: CredentialsIn, ip: str = "unknown") -> TokensOut:
        email = self.email(body.email)
        try:
            check_password_policy(body.password, email)
        except WeakPassword as exc:
            raise ApiError(422, "weak_password", f"password: {exc}") from None
        self.need_redis()
        # Every new account is credited with demo money: one address may open only so many.
        retry_after = await self.store.reserve_registration(ip, self.s.register_max_per_ip, self.s.register_window_s)
        if retry_after:
            self.status.incr("throttled")
            log.warning("registration from %s refused: too many from this address", ip)
            raise ApiError(
                429,
                "too_many_registrations",
                f"too many new accounts from your address; try again in {retry_after} s",
                {"Retry-After": str(retry_after)},
            )
        taken = ApiError(409, "email_taken", f"an account for {email} already exists; log in instead")
        if await self.store.get(email) is not None:
            raise taken
        created = await self.store.create(email, await self.hash(body.password))
        if created is None:
            raise taken
        if created is LOOKALIKE:
            raise ApiError(
                409, "email_lookalike", f"{email} looks like the address of an existing account; use another"
            )
        log.info("registered %s", email)
        self.status.incr("registered")
        return await self.tokens_for(email)

    async def login(self, body: CredentialsIn, ip: str) -> TokensOut:
        email = self.email(body.email)
        self.need_redis()
        s = self.s
        throttle = await self.store.reserve_login(
            email, ip, s.login_max_failures, s.login_max_failures_per_ip, s.login_window_s
        )
        if throttle.kind is not None:
            self.status.incr("throttled")
            log.warning("login for %s from %s refused: too many failures per %s", email, ip, throttle.kind)
            who = "for this account" if throttle.kind == "email" else "from your address"
            raise ApiError(
                429,
                "too_many_attempts",
                f"too many failed logins {who}; try again in {throttle.retry_after} s",
                {"Retry-After": str(throttle.retry_after)},
            )
        user = await self.store.get(email)
        password = body.password
        if len(password) > 4 * MAX_PASSWORD_CHARS:
            password = ""  # could never have been registered; do not feed it to Argon2
        good = await self.verify(user.password_hash if user else await self.dummy_hash(), password)
        if user is None or not good or not password:
            self.status.incr("login_failures")
            log.info("failed login for %s from %s", email, ip)
            raise ApiError(401, "invalid_credentials", "invalid email or password")
        await self.store.login_succeeded(email, ip)
        if await self.store.is_disabled(email):
            log.info("login for disabled account %s from %s refused", email, ip)
            raise ApiError(403, "account_disabled", "account disabled; ask the operator to enable it")
        if needs_rehash(user.password_hash):
            await self.store.set_hash(email, await self.hash(password))
        tokens = await self.tokens_for(email)
        self.status.incr("logins")
        log.info("login %s from %s", email, ip)
        return tokens

    async def refresh(self, body: RefreshIn) -> TokensOut:
        self.need_redis()
        result = await self.store.rotate(body.refresh_token, self.s.refresh_token_ttl_s)
        if result.status is Refresh.REUSED:
            self.status.incr("reuse_detected")
            log.warning("spent refresh token presented again for %s: revoked %d sessions", result.email, result.revoked)
            raise ApiError(
                401,
                "token_reused",
                "refresh token was already used; every session of this account is revoked; log in again",
            )
        if result.status is Refresh.DISABLED:
            raise ApiError(403, "account_disabled", "account disabled; ask the operator to enable it")
        if result.status is not Refresh.OK or result.email is None or result.token is None:
            raise ApiError(401, "invalid_token", "refresh token is invalid, expired or revoked; log in again")
        now = int(time.time())
        access, exp = self.signer.issue(result.email, now)
        self.status.incr("refreshes")
        return TokensOut(email=result.email, access_token=access, refresh_token=result.token, expires_in=exp - now)

    async def logout(self, body: RefreshIn) -> None:
        self.need_redis()
        email = await self.store.revoke(body.refresh_token)
        if email is not None:
            self.status.incr("logouts")
            log.info("logout %s", email)

    async def me(self, creds: HTTPAuthorizationCredentials | None) -> MeOut:
        if creds is None or not creds.credentials:
            raise ApiError(401, "unauthorized", "missing bearer token", UNAUTHORIZED_HEADERS)
        try:
            claims = await self.ring.verify(creds.credentials)
        except TokenError as exc:
            raise ApiError(401, "invalid_token", f"invalid token: {exc.reason}", UNAUTHORIZED_HEADERS) from None
        self.need_redis()
        user = await self.store.get(claims.email)
        if user is None:
            raise ApiError(401, "invalid_token", "invalid token: unknown account", UNAUTHORIZED_HEADERS)
        if await self.store.is_disabled(claims.email):
            raise ApiError(403, "account_disabled", "account disabled; ask the operator to enable it")
        created = datetime.fromtimestamp(user.created, UTC).isoformat(timespec="seconds")
        return MeOut(email=user.email, created=created, disabled=False)


# --- ASGI guard: body size and type -------------------------------------------------------------


class BodyGuard:
    """413 for bodies over ``limit`` (declared or streamed), 415 for non-JSON POSTs under /auth."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await self._reply(send, 400, "bad_request", "bad Content-Length header")
                return
            if size > self.limit:
                await self._too_large(send)
                return
        if scope["method"] == "POST" and scope["path"].startswith("/auth/"):
            media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if media != b"application/json" and not media.endswith(b"+json"):
                await self._reply(
                    send, 415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json"
                )
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        key = duplicate_key(body) if scope["method"] == "POST" else None
        if key is not None:
            await self._reply(send, 400, "duplicate_key", f"duplicate key {key!r} in the JSON body")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await self._reply(send, 413, "body_too_large", f"request body is larger than {self.limit} bytes")

    @staticmethod
    async def _reply(send: Send, status: int, error: str, detail: str) -> None:
        body = error_body(error, detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


# --- the app ----------------------------------------------------------------------------------


def _validation_detail(errors: list[dict[str, Any]]) -> tuple[int, str, str]:
    for err in errors:
        if err.get("type") == "json_invalid":
            return 400, "invalid_json", "request body is not valid JSON"
    parts = []
    for err in errors[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        field = ".".join(loc)
        msg = str(err.get("msg", "invalid"))
        if not field and err.get("type") == "missing":
            parts.append("request body is required (a JSON object)")
        elif not field:
            parts.append(f"body: {msg}")
        else:
            parts.append(f"{field}: {msg}")
    return 422, "invalid_request", "; ".join(parts) or "invalid request"


def create_app(svc: AuthService) -> FastAPI:
    app = FastAPI(
        title="stockctl auth",
        version="1",
        description="Accounts, logins and access tokens of a stockctl instance.",
        openapi_url="/auth/openapi.json",
        docs_url="/auth/docs",
        redoc_url=None,
    )
    bearer = HTTPBearer(auto_error=False, description="An access token from /auth/login.")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, error, detail = _validation_detail(list(exc.errors()))
        return error_response(status, error, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        status = exc.status_code if 400 <= exc.status_code < 500 else 400
        return error_response(status, codes.get(exc.status_code, "bad_request"), detail, exc.headers)

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        svc.redis_failed(exc)
        return error_response(
            503, "unavailable", "the account store is unreachable; try again shortly", {"Retry-After": "2"}
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error")

    @app.middleware("http")
    async def _count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        svc.status.incr("requests")
        if response.status_code >= 400:
            svc.status.incr(f"http_{response.status_code}")
        return response

    app.add_middleware(BodyGuard, limit=MAX_BODY_BYTES)

    def ip_of(request: Request) -> str:
        peer = request.client.host if request.client else None
        return svc.client_ip(peer, request.headers.getlist("x-forwarded-for"), request.headers.get(PROXY_SECRET_HEADER))

    @app.post(
        "/auth/register", status_code=201, response_model=TokensOut, responses=_errors(400, 409, 413, 415, 422, 429)
    )
    async def register(body: CredentialsIn, request: Request) -> TokensOut:
        """Create an account and log it in (a limited number per client address and window)."""
        return await svc.register(body, ip_of(request))

    @app.post("/auth/login", response_model=TokensOut, responses=_errors(400, 401, 403, 413, 415, 422, 429))
    async def login(body: CredentialsIn, request: Request) -> TokensOut:
        """Exchange email and password for an access token and a refresh token."""
        return await svc.login(body, ip_of(request))

    @app.post("/auth/refresh", response_model=TokensOut, responses=_errors(400, 401, 403, 413, 415, 422))
    async def refresh(body: RefreshIn) -> TokensOut:
        """Spend a refresh token for a new pair. A spent token presented again revokes every session."""
        return await svc.refresh(body)

    @app.post("/auth/logout", status_code=204, response_class=Response, responses=_errors(400, 413, 415, 422))
    async def logout(body: RefreshIn) -> Response:
        """Revoke a refresh token (access tokens expire on their own)."""
        await svc.logout(body)
        return Response(status_code=204)

    @app.get("/auth/me", response_model=MeOut, responses=_errors(401, 403))
    async def me(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> MeOut:
        """The account an access token belongs to."""
        return await svc.me(creds)

    async def jwks() -> JSONResponse:
        return JSONResponse(await svc.ring.jwks(), headers={"Cache-Control": JWKS_CACHE})

    app.get("/.well-known/jwks.json", summary="Public signing keys (JWKS)")(jwks)
    app.get("/auth/jwks.json", summary="Public signing keys (JWKS), under /auth")(jwks)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 while the account store answers, 503 otherwise."""
        up = svc.redis_up
        return JSONResponse(
            {"status": "ok" if up else "degraded", "redis": "ok" if up else "unreachable"}, 200 if up else 503
        )

    return app


# --- process ----------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or SystemExit(1) with a clear line in the log."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
            0
        ]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        raise SystemExit(1) from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        log.error("cannot listen on %s:%d: %s; choose another port with STOCKCTL_AUTH_PORT", host, port, exc)
        raise SystemExit(1) from None
    return sock


class Auth(Daemon):
    """Connects Redis, binds its port, loads the signing keys, then serves until told to stop."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(settings, name)
        self.server: SignalFreeServer | None = None
        self.serving: asyncio.Task[None] | None = None

    async def startup(self, stack: AsyncExitStack) -> None:
        s = self.settings
        r = await open_redis(stack, self.ops, self.stop, log)
        sock = bind(s.host, s.auth_port)
        stack.callback(sock.close)
        try:
            ring = await LiveRing.start(r, s, self.stop)
        except (KeyRingError, TokenError, OSError, ValueError) as exc:
            log.error("cannot load the signing keys (secrets in %s): %s", s.secrets_dir, exc)
            raise SystemExit(1) from None
        assert ring.signer is not None
        try:
            proxy_secret = load_proxy_secret(s.secrets_dir)
        except OSError as exc:
            log.error("cannot read or create the gateway secret in %s: %s", s.secrets_dir, exc)
            raise SystemExit(1) from None
        svc = AuthService(s, UserStore(r), ring, self.status, proxy_secret)
        await svc.prepare()
        config = uvicorn.Config(
            HttpMetrics(BodyLimit(create_app(svc)), self.ops),
            log_config=None,
            access_log=False,
            proxy_headers=False,  # X-Forwarded-For is believed only as stockctl.proxies says
            server_header=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(s.stop_timeout) - 2),
        )
        server = self.server = SignalFreeServer(config)
        self.serving = self.spawn(server.serve(sockets=[sock]), "HTTP server")
        while not server.started and not self.stop.is_set():  # a server that fails to start stops us
            await asyncio.sleep(0.02)
        if self.stop.is_set():
            return
        self.spawn(svc.watch_redis(self.stop), "Redis watch")
        self.spawn(self._watch_keys(ring), "signing-key reload")
        self.status.info |= {"url": f"http://{s.host}:{s.auth_port}", "kid": ring.signer.kid, "redis": "ok"}
        log.info("listening on %s (signing key %s)", self.status.info["url"], ring.signer.kid)

    async def _watch_keys(self, ring: LiveRing) -> None:
        """Re-read the ring every ``signing_key_reload_s``; the status shows the kid signed with."""
        while not await pause(self.settings.signing_key_reload_s, self.stop):
            async with ring.lock:
                await ring.refresh()
            if ring.signer is not None:
                self.status.info["kid"] = ring.signer.kid

    async def shutdown(self) -> None:
        """Let in-flight requests finish (up to ``stop_timeout``), then force the server off."""
        if self.server is None or self.serving is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.serving), self.settings.stop_timeout)
        if not self.serving.done():
            self.server.force_exit = True
            with contextlib.suppress(Exception):
                await self.serving


DAEMON = Auth

if __name__ == "__main__":
    main("auth", Auth)
