"""Redis URLs as redis-py takes them: one server, or a Redis/Valkey Cluster's seed nodes.

``redis://[:pass@]host:port/db`` (``rediss://`` for TLS) is one server, handed to redis-py as
it is. ``redis+cluster://[user:pass@]h1:p1,h2:p2`` (``rediss+cluster://`` for TLS) names a
cluster: any reachable entry is enough for the client to learn every node from it, and the
credentials, written once in the first entry, are used on every node. A cluster has only
database 0, so a ``/db`` path other than ``/0`` is refused.

Pure functions of a URL string; :mod:`stockctl.settings` validates with :func:`parse_redis_url`
and :mod:`stockctl.runtime.connections` builds the client from its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlparse

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
"""Cluster URL scheme -> whether it uses TLS."""

SINGLE_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class ClusterUrl:
    """A cluster's seed nodes and the credentials every node takes."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterUrl:
    """The seed nodes and credentials of a ``redis+cluster://`` URL; ValueError saying what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"not a cluster URL (expected redis+cluster://host:port,...): {scheme}://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        hosts = rest
    hosts, _, db = hosts.partition("/")
    if db not in ("", "0"):
        raise ValueError(f"a Redis Cluster has database 0 only, not /{db}")
    username = password = None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    nodes: list[tuple[str, int]] = []
    for entry in (e.strip() for e in hosts.split(",")):
        if not entry:
            continue
        parsed = urlparse(f"//{entry}")
        try:
            port = parsed.port or 6379
        except ValueError:
            raise ValueError(f"bad port in cluster node {entry!r}") from None
        if not parsed.hostname:
            raise ValueError(f"cluster node {entry!r} has no host")
        nodes.append((parsed.hostname, port))
    if not nodes:
        raise ValueError("a cluster URL needs at least one host:port")
    return ClusterUrl(tuple(nodes), username, password, CLUSTER_SCHEMES[scheme.lower()])


def parse_redis_url(url: str) -> ClusterUrl | None:
    """Check ``url``: its cluster form, or None for one server; ValueError saying what is wrong."""
    if is_cluster_url(url):
        return parse_cluster_url(url)
    scheme = url.partition("://")[0].lower()
    if scheme not in SINGLE_SCHEMES:
        raise ValueError(
            f"unknown Redis URL scheme {scheme}://; use redis://, rediss://, unix:// or redis+cluster://host:port,..."
        )
    if "," in url:
        raise ValueError("a comma list of Redis servers is a cluster: write it as redis+cluster://h1:p1,h2:p2")
    return None
