"""A stack behind one gateway, for tests that talk to it over HTTP and WebSocket.

:class:`GatewayStack` holds the settings the daemons run with and the daemons by name;
:meth:`GatewayStack.token` logs a user in over REST, registering them first if the
gateway does not know them yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from stockctl.settings import Settings
from tests.support.cli import PASSWORD
from tests.support.stack import Daemon


@dataclass
class GatewayStack:
    settings: Settings
    daemons: dict[str, Daemon]

    @property
    def base(self) -> str:
        return self.settings.gateway_url

    @property
    def ws(self) -> str:
        return self.settings.ws_url

    def token(self, email: str = "ada@example.com") -> str:
        """An access token of ``email`` (password :data:`PASSWORD`), registered on first use."""
        resp = httpx.post(f"{self.base}/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
        if resp.status_code == 401:
            resp = httpx.post(f"{self.base}/auth/register", json={"email": email, "password": PASSWORD}, timeout=10)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()["access_token"]
