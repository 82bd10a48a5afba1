"""Synchronous HTTP to one of several gateways: the CLI's and the TUI's REST and ``/auth`` calls.

``STOCKCTL_GATEWAY_URL`` (or ``STOCKCTL_AUTH_BASE_URL``) may be a comma list of base URLs. A
request goes to the gateway that answered last. It moves on to the next one only when it could
not have been acted on: the connection was refused or timed out, so nothing was sent. A read
(GET) also moves on when the answer never came, since reading twice does no harm, and so does
an ``idempotent`` command: an order with a ``client_order_id``, which the exchange stores once
however many gateways it comes through (a frozen gateway accepts connections and never
answers: only this gets a client past it). Any other command whose answer was lost is not sent
again elsewhere; its error says to check, not to retry blindly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stockctl.wire.base_urls import split_urls

if TYPE_CHECKING:
    import httpx


class FailoverHttp:
    """One ``httpx.Client`` per base URL, used in turn; ``label`` names them all for errors."""

    def __init__(self, urls: str | Sequence[str], timeout: float = 10.0, headers: dict[str, str] | None = None) -> None:
        import httpx  # here: shell completion imports the client modules and must start fast

        self.urls = split_urls(urls)
        self._clients = [httpx.Client(base_url=u, timeout=timeout, headers=headers) for u in self.urls]
        self._current = 0

    @property
    def base_url(self) -> str:
        """The gateway that answered last (the first one before any answer)."""
        return self.urls[self._current]

    @property
    def label(self) -> str:
        return ", ".join(self.urls)

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def request(self, method: str, path: str, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        """The answer of the first gateway that gives one; the last transport error if none does."""
        import httpx

        unsent = (httpx.ConnectError, httpx.ConnectTimeout)
        movable = httpx.TransportError if idempotent or method.upper() == "GET" else unsent
        n = len(self._clients)
        for step in range(n):
            i = (self._current + step) % n
            try:
                resp = self._clients[i].request(method, path, **kwargs)
            except movable:
                if step == n - 1:
                    raise
                continue
            self._current = i
            return resp
        raise AssertionError("unreachable: the loop returns or raises")
