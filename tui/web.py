"""``stockctl tui --web``: the same app in a browser, through textual-serve, on loopback."""

from __future__ import annotations

import os
import shlex
import sys

from textual_serve.server import Server

from stockctl.settings import Settings


def web_command() -> str:
    """The command textual-serve runs for each browser session."""
    return f"{shlex.quote(sys.executable)} -m tui"


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8703) -> str:
    """Serve the app at ``http://host:port`` until interrupted; returns the address.

    Each browser tab runs its own ``python -m tui`` with this instance's state dir
    (and so its stored login). Loopback by default: anyone who can reach the page
    trades as the logged-in user.
    """
    os.environ["STOCKCTL_HOME"] = str(settings.home)
    url = f"http://{host}:{port}"
    server = Server(web_command(), host=host, port=port, title="stockctl", public_url=url)
    print(f"stockctl tui serving on {url} (Ctrl+C to stop)", flush=True)
    server.serve()
    return url
