"""A running exchange for tests: :class:`Ex` talks to it over REST as logged-in users.

:func:`running_exchange` starts one on the session servers (wiped first): matching, processor,
auth and gateway on free ports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from stockctl.settings import Settings
from tests.support.cli import PASSWORD
from tests.support.stack import Daemon, Servers, stack_settings, wipe_exchange


class Ex:
    """A running exchange: settings, daemons and logged-in users."""

    def __init__(self, settings: Settings, procs: dict) -> None:
        self.settings, self.procs = settings, procs
        self.tokens: dict[str, str] = {}

    @property
    def base(self) -> str:
        return self.settings.gateway_url

    def login(self, email: str) -> str:
        if email not in self.tokens:
            resp = httpx.post(f"{self.base}/auth/register", json={"email": email, "password": PASSWORD}, timeout=10)
            assert resp.status_code == 201, resp.text
            self.tokens[email] = resp.json()["access_token"]
        return self.tokens[email]

    def call(self, email: str, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.login(email)}"}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=15, **kw)

    def order(self, email: str, **body) -> httpx.Response:
        return self.call(email, "POST", "/api/v1/orders", json=body)

    def balances(self, email: str) -> dict[str, dict[str, str]]:
        return self.call(email, "GET", "/api/v1/balances").json()


def running_exchange(servers: Servers, tmp_path: Path, daemons: Callable[..., Daemon]) -> Ex:
    """An empty exchange with quotes for AAPL (5 ticks/s): matching, processor, auth and gateway."""
    wipe_exchange(servers)
    settings = stack_settings(servers, tmp_path / "home", symbols=["AAPL"], rate=5)
    procs = {name: daemons(name, settings) for name in ("matching", "processor", "auth", "gateway")}
    return Ex(settings, procs)
