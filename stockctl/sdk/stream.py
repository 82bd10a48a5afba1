"""The one WebSocket loop of stockctl: auth, subscribe, renew the token, reconnect, fail over.

:func:`live_frames` keeps one socket open for a list of channel groups and yields every frame
(:class:`~stockctl.wire.gateway.ServerFrame`, data left raw). The CLI's live commands
(``watch``, ``book --watch``, ``alert watch``), the TUI's data source and the SDK's
:class:`~stockctl.sdk.client.Client` iterators all read through it, so they renew, reconnect and
fail over the same way. :func:`stream` is the CLI's shape of it: ``(type, channel, raw data)``.

:class:`Endpoints` says where the gateways are: the running instance of a state dir (resolved
again on every connect, so a restarted instance is found), or a list of gateway base URLs; a
URL's WebSocket address is asked of its ``GET /api/v1/info`` unless given. A connection that
fails moves on to the next gateway at once; only when every one has failed in a row does the
loop back off (jittered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import msgspec
import websockets

from stockctl.client.credentials import LiveSession, NotLoggedIn, Session
from stockctl.errors import ServiceUnavailable, StockctlError, UsageError
from stockctl.instance.registry import recorded_gateways, resolve_gateway_url, resolve_ws_url
from stockctl.runtime.retry import Backoff
from stockctl.sdk.sessions import TokenSource
from stockctl.sdk.types import Info
from stockctl.settings import Settings
from stockctl.wire.base_urls import split_urls
from stockctl.wire.gateway import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, ServerFrame, server_frame_decoder

StateHandler = Callable[[str, str], None]
RENEW_ID = "renew"
"""The ``id`` of the ``auth`` messages that renew the token on an open socket."""


PING_S = 2.0
PING_TIMEOUT_S = 3.0
CLOSE_TIMEOUT_S = 1.0


class Endpoints:
    """The gateways a client may use, in order of preference.

    ``Endpoints.instance(settings)``: the running instance of a state dir (``run/instance.json``,
    or ``STOCKCTL_GATEWAY_URL`` / ``STOCKCTL_WS_URL``), resolved on every use.
    ``Endpoints(["http://a:8700", "http://b:8700"])``: fixed gateways; ``ws_urls`` (same
    order) may name their sockets, else each one's ``/api/v1/info`` is asked when first needed.
    """

    def __init__(self, rest_urls: Sequence[str], ws_urls: Sequence[str | None] = ()) -> None:
        if not rest_urls:
            raise UsageError("no gateway URL given", "pass a URL such as http://127.0.0.1:8700")
        self._rest = [u.rstrip("/") for u in rest_urls]
        self._ws: list[str | None] = [*ws_urls, *[None] * (len(self._rest) - len(ws_urls))]
        self.settings: Settings | None = None

    @classmethod
    def instance(cls, settings: Settings) -> Endpoints:
        """The running instance; or, when ``STOCKCTL_GATEWAY_URL`` lists several gateways, those
        (their sockets from a ``STOCKCTL_WS_URL`` list in the same order, else asked)."""
        rest = split_urls(resolve_gateway_url(settings)) if os.environ.get("STOCKCTL_GATEWAY_URL") else []
        if len(rest) > 1:
            ws = os.environ.get("STOCKCTL_WS_URL", "")
            return cls(rest, [u.strip() for u in ws.split(",") if u.strip()] if "," in ws else [])
        recorded = [] if rest else recorded_gateways(settings)  # `up --cluster` records both gateways
        if len(recorded) > 1:
            return cls([url for url, _ in recorded], [ws for _, ws in recorded])
        out = cls(["(the running instance)"])
        out.settings = settings
        return out

    def __len__(self) -> int:
        return len(self._rest)

    def rest_url(self, i: int) -> str:
        """The REST base URL of gateway ``i`` (NotRunningError if the instance is not up)."""
        if self.settings is not None:
            return resolve_gateway_url(self.settings)
        return self._rest[i % len(self._rest)]

    async def ws_url(self, i: int) -> str:
        """The WebSocket URL of gateway ``i``; raises OSError-like errors when it cannot be learnt."""
        if self.settings is not None:
            return resolve_ws_url(self.settings)
        i %= len(self._rest)
        known = self._ws[i]
        if known is None:
            async with httpx.AsyncClient(timeout=5) as http:
                resp = await http.get(f"{self._rest[i]}/api/v1/info")
            resp.raise_for_status()
            known = self._ws[i] = msgspec.json.decode(resp.content, type=Info).ws_url
        return known

    def __repr__(self) -> str:
        return "Endpoints(instance)" if self.settings is not None else f"Endpoints({self._rest})"


async def _keep_renewed(ws: websockets.ClientConnection, session: TokenSource, grant: Session) -> None:
    """Renew the socket's token before it expires: rotate, then ``{"op":"auth"}`` on the socket.

    Ends by closing the socket and raising NotLoggedIn when the login is gone. While auth
    cannot be reached it retries every second: the token on the socket is still valid, and
    if it expires first, the gateway's 4401 close takes the reconnect path.
    """
    while True:
        await asyncio.sleep(max(0.0, grant.renew_in()))
        try:
            fresh = await asyncio.to_thread(session.renew, grant.access_token)
        except NotLoggedIn:
            await ws.close(1000, "logged out")
            raise
        except StockctlError:
            await asyncio.sleep(1.0)
            continue
        if fresh.access_token != grant.access_token:
            await ws.send(json.dumps({"op": "auth", "token": fresh.access_token, "id": RENEW_ID}))
        grant = fresh


async def live_frames(
    where: Settings | Endpoints,
    groups: list[list[str]],
    session: TokenSource,
    on_state: StateHandler | None = None,
    max_attempts: int | None = 30,
    max_backoff_s: float = 5.0,
) -> AsyncIterator[ServerFrame]:
    """Every frame of one WebSocket kept open: auth, one subscribe per group, renewal, reconnects.

    ``where`` is a state dir's settings (its running instance) or :class:`Endpoints`. The
    subscribe of ``groups[i]`` carries ``id`` i + 1, so an error frame says which group it is
    about; every (re)connect subscribes again, and each channel's ``snapshot`` comes again.
    While connected, the token is renewed before it expires on the open socket (the
    subscriptions stay; a ``welcome`` frame answers each renewal). When the gateway closes
    with 4401 (token refused or expired), it reconnects once at once with a fresh token; a
    second 4401 before a ``welcome``, a 4403, or a login that is gone raises NotLoggedIn.
    Other failures move to the next gateway, backing off once all have failed
    (``max_attempts`` in a row, None: forever); ``on_state`` hears ``("connecting", where)``
    and ``("disconnected", why)``.
    """
    endpoints = where if isinstance(where, Endpoints) else Endpoints.instance(where)
    state: StateHandler = on_state or (lambda _state, _detail: None)
    backoff = Backoff(base=0.2, cap=max_backoff_s)  # jittered: clients of a restarted gateway do not return in step
    attempt, refused_once, index = 0, False, 0
    pending: Session | None = None  # the fresh token to use after a 4401
    while True:
        grant: Session | None = None
        try:
            url = await endpoints.ws_url(index)
            state("connecting", url if not attempt else f"attempt {attempt + 1}")
            grant = pending or await asyncio.to_thread(session.current)
            pending = None
            # Pings every PING_S: a gateway that is frozen (or cut off) stops answering them, and
            # the client moves to the next one within PING_S + PING_TIMEOUT_S + CLOSE_TIMEOUT_S
            # instead of the library's 50 s (its close handshake alone waits 10 s for the peer).
            async with websockets.connect(
                url,
                open_timeout=5,
                max_size=2**22,
                ping_interval=PING_S,
                ping_timeout=PING_TIMEOUT_S,
                close_timeout=CLOSE_TIMEOUT_S,
            ) as ws:
                await ws.send(json.dumps({"op": "auth", "token": grant.access_token}))
                for i, channels in enumerate(groups, 1):
                    await ws.send(json.dumps({"op": "subscribe", "channels": channels, "id": i}))
                renewer = asyncio.create_task(_keep_renewed(ws, session, grant)) if session.renewable else None
                try:
                    async for raw in ws:
                        f = server_frame_decoder.decode(raw)
                        if f.type == "welcome":
                            attempt, refused_once = 0, False
                        elif f.type == "error" and f.id == RENEW_ID:
                            continue  # the old token stays until it expires; then the 4401 path
                        yield f
                finally:
                    if renewer is not None:
                        renewer.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await renewer
                if renewer is not None and renewer.done() and not renewer.cancelled():
                    exc = renewer.exception()
                    if isinstance(exc, NotLoggedIn):
                        raise exc
            detail = "the gateway closed the connection"
        except websockets.ConnectionClosed as exc:
            close = exc.rcvd
            code = close.code if close is not None else None
            if code == CLOSE_UNAUTHORIZED and not refused_once and session.renewable and grant is not None:
                refused_once = True
                state("disconnected", "token refused; reconnecting with a fresh one")
                try:
                    pending = await asyncio.to_thread(session.renew, grant.access_token)
                except NotLoggedIn:
                    raise
                except StockctlError as err:
                    state("disconnected", str(err))
                else:
                    continue  # at once: the subscriptions come back with the new connection
            elif code in (CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN):
                raise NotLoggedIn(close.reason if close and close.reason else "the gateway refused the token") from None
            detail = f"connection lost ({close.reason if close and close.reason else 'closed'})"
        except (OSError, websockets.WebSocketException, TimeoutError, httpx.HTTPError) as exc:
            detail = f"cannot reach the gateway ({exc.__class__.__name__})"
        except StockctlError as exc:
            if isinstance(exc, NotLoggedIn):
                raise
            detail = str(exc)
        state("disconnected", detail)
        if max_attempts is not None and attempt >= max_attempts:
            raise ServiceUnavailable(f"{detail} after {attempt} attempts", "is the instance up? `stockctl status`")
        index += 1
        # The next gateway at once; a pause only once every one has failed in a row.
        if len(endpoints) == 1 or index % len(endpoints) == 0:
            await asyncio.sleep(backoff.delay(attempt))
        attempt += 1


async def stream(
    settings: Settings,
    channels: list[str],
    reconnect: bool = True,
    token: str | Callable[[], str] | None = None,
) -> AsyncIterator[tuple[str, str, msgspec.Raw]]:
    """Yield ``(type, channel, raw JSON data)`` for snapshots and updates of ``channels``.

    With the stored login (no ``token``) the session renews itself before the access token
    expires, on the open socket, so a stream runs for as long as the login lasts. Reconnects
    and resubscribes by itself when the gateway goes away (see :func:`live_frames`); an
    error frame about a channel (say, an unknown symbol) is raised as UsageError.
    """
    session = LiveSession(settings, token)
    async for f in live_frames(settings, [channels], session, max_attempts=30 if reconnect else 0):
        if f.type == "error":
            raise UsageError(f.detail or f.error or "gateway error")
        if f.channel is not None and len(f.data):
            yield f.type, f.channel, f.data
