"""A daemon's NATS and Redis connections: connected with retries, closed with the daemon.

- :func:`open_nats` connects (retrying with :func:`~stockctl.runtime.retry.retry` until it works),
  registers the ``nats`` readiness check and drains the connection when the daemon's exit stack
  unwinds. Once connected, nats-py reconnects by itself forever; its callbacks only log state
  changes and call ``on_reconnect``.
- :func:`open_redis` makes a pooled client that retries single commands across brief outages,
  waits until Redis answers PING, registers the ``redis`` check and closes the client with the
  stack.

Both raise :class:`~stockctl.runtime.retry.Stopped` if the daemon is told to stop before they
connect. URLs carry credentials: only their masked form is ever logged.

nats-py and redis-py are imported by the function that needs them, not by this module: a
daemon that talks to one server only (publisher, history and liquidity use NATS, auth Redis)
never pays the other's import, a quarter of a second of CPU at every ``up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stockctl.runtime.keylayout import ensure_key_layout
from stockctl.runtime.ops import Ops
from stockctl.runtime.retry import retry
from stockctl.runtime.status import StateLog
from stockctl.settings import Settings, mask_url
from stockctl.wire.nats_urls import nats_options
from stockctl.wire.redis_urls import ClusterUrl, parse_redis_url

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis
    from nats.aio.client import Client as NATS


async def connect_nats(
    settings: Settings,
    name: str,
    stop: asyncio.Event,
    logger: logging.Logger,
    on_reconnect: Callable[[], None] | None = None,
) -> NATS:
    """Connect, retrying with backoff until it works (or raising Stopped once ``stop`` is set)."""
    import nats

    state = StateLog(logger, f"NATS {mask_url(settings.effective_nats_url)}")

    async def disconnected() -> None:
        if not stop.is_set():  # draining at shutdown also disconnects
            state.set("disconnected", "retrying")

    async def reconnected() -> None:
        state.set("reconnected")
        if on_reconnect is not None:
            on_reconnect()

    async def error(exc: Exception) -> None:
        # nats-py retries a first connect inside nats.connect and reports each failure only
        # here: say once why we are not connected (a wrong password above all), not per try.
        if "authorization violation" in str(exc).lower():
            state.set("refused", f"{exc}; check the user and password in the URL (STOCKCTL_NATS_URL)")
        elif state.state in (None, "unreachable"):
            state.set("unreachable", f"{exc.__class__.__name__}: {exc}; retrying")
        else:
            logger.debug("nats error: %s", exc)

    async def connect() -> NATS:
        return await nats.connect(
            **nats_options(settings.effective_nats_url),
            name=f"stockctl-{name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            ping_interval=settings.nats_ping_interval_s,
            max_outstanding_pings=2,
            allow_reconnect=True,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            pending_size=64 * 1024 * 1024,
        )

    def unreachable(exc: Exception, _attempt: int) -> None:
        state.set("unreachable", f"{exc.__class__.__name__}: {exc}; retrying")

    nc = await retry(connect, stop=stop, on_error=unreachable, what="NATS")
    state.set("connected")
    return nc


async def open_nats(
    stack: contextlib.AsyncExitStack,
    ops: Ops,
    stop: asyncio.Event,
    logger: logging.Logger,
    on_reconnect: Callable[[], None] | None = None,
) -> NATS:
    """The daemon's NATS connection: drained with ``stack``, with a readiness check."""
    nc = await connect_nats(ops.settings, ops.daemon, stop, logger, on_reconnect=on_reconnect)
    stack.push_async_callback(nc.drain)
    ops.check("nats", lambda: nc.is_connected)
    return nc


def redis_client(settings: Settings, retries: int = 3) -> aioredis.Redis:
    """A pooled async Redis client that retries commands across brief outages.

    ``retries=0`` gives a client that never sends a command twice by itself: a transaction
    whose reply was lost is then the caller's to check (redis-py would otherwise re-send it).
    A ``redis+cluster://`` URL gives redis-py's cluster client, which follows the cluster's
    slot map and a failover by itself; it answers the same calls (typed as the plain client).
    """
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry  # the async one: redis-py 8.2 warns (in our JSON logs) at the sync one
    from redis.backoff import ExponentialBackoff

    url = settings.effective_redis_url
    cluster = parse_redis_url(url)
    if cluster is not None:
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        client = RedisCluster(
            **_cluster_args(cluster, ClusterNode),
            # Per node: a failover moves a slot's traffic onto the promoted replica's pool.
            max_connections=512,
            decode_responses=False,
            socket_connect_timeout=2,
            # Short: a paused primary must fail a command soon, so the slot map is read again
            # and the promoted replica takes the retry (the cluster's own retries, below).
            socket_timeout=2,
            # Retries ride out a failover (a slot is unserved for the node timeout and a
            # vote, about 3 s): each one re-reads the slot map. Even with ``retries=0``, the
            # callers' writes are scripts that are no-ops when sent twice (their fences).
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=12),
        )
        return client  # type: ignore[return-value]
    # A blocking pool: a burst of requests (thousands of WebSocket clients connecting at
    # once) waits for a connection instead of failing with "too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=64,
        timeout=10,
        decode_responses=False,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=retries),
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


def sync_redis_client(url: str) -> redis.Redis:
    """A synchronous client for the operator commands (``stockctl users``): one server, or the
    cluster client for a ``redis+cluster://`` URL, with short timeouts (a person is waiting)."""
    import redis

    cluster = parse_redis_url(url)
    if cluster is None:
        return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    from redis.cluster import ClusterNode, RedisCluster

    client = RedisCluster(**_cluster_args(cluster, ClusterNode), socket_connect_timeout=2, socket_timeout=5)
    return client  # type: ignore[return-value]


def _cluster_args(cluster: ClusterUrl, node: Callable[[str, int], Any]) -> dict[str, Any]:
    """What both cluster clients (async and sync) take from the URL: the seed nodes (as
    ``node``, the client's own ClusterNode class), the credentials, TLS; and that a slot
    without a primary (mid-failover) leaves the others usable."""
    return {
        "startup_nodes": [node(host, port) for host, port in cluster.nodes],
        "username": cluster.username,
        "password": cluster.password,
        "ssl": cluster.tls,
        "require_full_coverage": False,
    }


async def open_redis(
    stack: contextlib.AsyncExitStack, ops: Ops, stop: asyncio.Event, logger: logging.Logger
) -> aioredis.Redis:
    """The daemon's Redis client, answering PING: closed with ``stack``, with a readiness check."""
    r = redis_client(ops.settings)
    stack.push_async_callback(r.aclose)
    ops.check("redis", r.ping)
    state = StateLog(logger, f"Redis {mask_url(ops.settings.effective_redis_url)}")

    def unreachable(exc: Exception, _attempt: int) -> None:
        state.set("unreachable", f"{exc.__class__.__name__}: {exc}; retrying")

    await retry(r.ping, stop=stop, on_error=unreachable, what="Redis")
    state.set("connected")
    cluster = parse_redis_url(ops.settings.effective_redis_url) is not None
    await retry(lambda: ensure_key_layout(r, cluster), stop=stop, on_error=unreachable, what="Redis")
    return r
