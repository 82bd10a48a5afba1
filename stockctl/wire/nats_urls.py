"""NATS server URLs as nats-py takes them: a comma list split into servers, and the credentials
of the list handed to every server (the ones a cluster announces too).

Pure functions of a URL string; :mod:`stockctl.settings` holds the URL, this turns it into
``nats.connect`` arguments.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse


def nats_servers(url: str) -> list[str]:
    """A NATS URL, or a comma list of them, as the server list nats-py takes.

    ``nats://u:p@h1:4222,h2:4222``: an entry without a scheme takes the first entry's scheme and
    credentials, so a cluster's password is written once. nats-py refuses the comma string
    itself (``invalid connect url option``); given a list it tries each and follows the
    cluster's gossip. Empty entries (a trailing comma) are dropped.
    """
    parts = [p.strip() for p in url.split(",") if p.strip()]
    if not parts:
        return [url]
    first = parts[0]
    scheme, sep, rest = first.partition("://")
    prefix = f"{scheme}://" if sep else "nats://"
    userinfo = rest.rpartition("@")[0] + "@" if sep and "@" in rest else ""
    return [p if "://" in p else f"{prefix}{userinfo}{p}" for p in parts]


def nats_options(url: str) -> dict[str, Any]:
    """``nats.connect`` keyword arguments for a NATS URL or comma list: ``servers`` and the credentials.

    nats-py sends a URL's userinfo only to that URL's server. The servers a cluster announces
    (its gossip) come without it, so a client that fails over to one is refused with
    ``Authorization Violation`` until it happens to try a listed entry again. Passing the first
    entry's credentials as options makes every server, announced or listed, get them. They are
    taken the way nats-py reads a URL (``urlparse``, not unquoted), so one server behaves as before.
    """
    servers = nats_servers(url)
    for server in servers:
        parsed = urlparse(server)
        if parsed.username is not None and parsed.password is not None:
            return {"servers": servers, "user": parsed.username, "password": parsed.password}
        if parsed.username:
            return {"servers": servers, "token": parsed.username}
    return {"servers": servers}
