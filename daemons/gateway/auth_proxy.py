"""``/auth/*`` on the gateway: the auth daemon's routes passed through, so a client needs one base URL.

:class:`AuthProxy` forwards a request to the auth daemon and its answer back:

* only ``content-type``, ``authorization`` and ``accept`` go up (raw bytes: a header value need
  not be ASCII), plus the request id and the client's address in ``X-Forwarded-For``; a
  client's own ``X-Forwarded-For`` or proxy secret never reaches auth;
* the client address is the socket peer, or what a proxy named in ``trusted_proxies``
  forwarded (:mod:`stockctl.auth.proxies`); the proxy secret tells auth to believe it;
* only ``content-type``, ``retry-after`` and ``www-authenticate`` come back;
* a body over 64 KiB is refused (413), auth unreachable is a 503.

:func:`add_routes` mounts ``/auth/{path}`` (GET, POST) and ``/.well-known/jwks.json``. A path goes
on as the client sent it, and only if it stays under ``/auth/`` however it is decoded
(:func:`inside_auth`); any other is refused with 404.
"""

from __future__ import annotations

from urllib.parse import unquote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from daemons.gateway.responses import error_response
from stockctl.auth.proxies import PROXY_SECRET_HEADER, TrustedProxies
from stockctl.runtime.logs import REQUEST_ID_HEADER, bound, new_request_id
from stockctl.settings import Settings

MAX_BODY_BYTES = 64 * 1024
PASSED_UP = (b"content-type", b"authorization", b"accept")
PASSED_BACK = ("content-type", "retry-after", "www-authenticate")


def inside_auth(raw_path: str) -> bool:
    """True if ``raw_path`` stays under ``/auth/`` however it is decoded: no ``.`` or ``..``
    segment (also as ``%2e``, ``%252e``...), no backslash, no encoded slash."""
    path = raw_path
    for _ in range(4):  # undo layered percent-encoding; a fifth layer is refused below
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        return False
    if "\\" in path or not path.startswith("/auth/") or path.count("/") != raw_path.count("/"):
        return False
    return not any(seg in (".", "..") for seg in path.split("/"))


class AuthProxy:
    """Passes one request on to the auth daemon (``http`` has its base URL) and its answer back."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, proxy_secret: str = "") -> None:
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.http = http
        self.proxy_secret = proxy_secret

    async def forward(self, request: Request, path: str) -> Response:
        """The auth daemon's answer to ``request`` sent to ``path``, or the gateway's error."""
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error_response(413, "too_large", "request body over 64 KiB")
        # Raw bytes both ways: a header value need not be ASCII, and the path goes on as the client sent it.
        # Only these three pass: a client's own X-Forwarded-For or proxy secret never reaches auth.
        headers = [(k, v) for k, v in request.headers.raw if k in PASSED_UP]
        client = self.proxies.client_address(
            request.client.host if request.client else None, request.headers.getlist("x-forwarded-for")
        )
        headers.append((b"x-forwarded-for", client.encode()))
        headers.append((PROXY_SECRET_HEADER.encode(), self.proxy_secret.encode()))  # auth believes the line above
        headers.append((REQUEST_ID_HEADER.encode(), (bound("request_id") or new_request_id()).encode()))
        try:
            upstream = await self.http.request(
                request.method, path, content=body, headers=headers, params=request.query_params
            )
        except httpx.InvalidURL:
            return error_response(400, "bad_request", "this URL cannot be passed on to the auth daemon")
        except httpx.HTTPError as exc:
            return error_response(503, "auth_unavailable", f"auth daemon unreachable: {exc.__class__.__name__}")
        keep = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_BACK}
        return Response(upstream.content, status_code=upstream.status_code, headers=keep)


def add_routes(app: FastAPI, proxy: AuthProxy) -> None:
    """Mount ``/auth/{path}`` and ``/.well-known/jwks.json`` on ``app``, both passed to auth."""

    @app.api_route("/auth/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    async def auth_proxy(request: Request, rest: str) -> Response:
        raw_path = (request.scope.get("raw_path") or f"/auth/{rest}".encode()).decode("latin-1")
        if not inside_auth(raw_path):
            return error_response(404, "not_found", "no such endpoint: the path leaves /auth/")
        return await proxy.forward(request, raw_path)

    @app.get("/.well-known/jwks.json", include_in_schema=False)
    async def jwks(request: Request) -> Response:
        return await proxy.forward(request, "/.well-known/jwks.json")
