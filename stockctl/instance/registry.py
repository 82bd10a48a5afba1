"""The instance registry: how to reach the running instance of a state dir.

The supervisor writes ``run/instance.json`` (addresses, credentials masked) and
``secrets/instance-urls.json`` (the NATS and Redis URLs with credentials, 0600) when the
instance is up, and removes them when it stops; every client resolves its URLs here.
``STOCKCTL_GATEWAY_URL`` / ``STOCKCTL_WS_URL`` point elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stockctl.errors import NotRunningError
from stockctl.instance.cluster import gateway_urls, ws_urls
from stockctl.servercreds import write_private
from stockctl.settings import Settings, mask_url
from stockctl.wire.base_urls import split_urls


def instance_path(settings: Settings) -> Path:
    return settings.run_dir / "instance.json"


def server_urls_path(settings: Settings) -> Path:
    """Where the running instance's NATS and Redis URLs are kept, credentials included (0600)."""
    return settings.secrets_dir / "instance-urls.json"


def write_instance(settings: Settings) -> None:
    """Record how to reach this instance: ``run/instance.json`` with credentials masked, and
    the NATS and Redis URLs as they are in ``secrets/instance-urls.json`` (0600)."""
    nats_url, redis_url = settings.effective_nats_url, settings.effective_redis_url
    write_private(server_urls_path(settings), json.dumps({"nats_url": nats_url, "redis_url": redis_url}))
    doc: dict[str, Any] = {
        "nats_url": mask_url(nats_url),
        "redis_url": mask_url(redis_url),
        "auth_url": settings.effective_auth_url,
        # Under ``--cluster`` both gateways: clients fail over between them.
        "gateway_url": ",".join(gateway_urls(settings)) if settings.cluster else settings.gateway_url,
        "ws_url": settings.ws_url,
    }
    if settings.cluster:  # every gateway with its socket, for clients that fail over (sdk Endpoints)
        doc["gateways"] = [
            {"url": u, "ws_url": w} for u, w in zip(gateway_urls(settings), ws_urls(settings), strict=True)
        ]
    write_private(instance_path(settings), json.dumps(doc))


def remove_instance(settings: Settings) -> None:
    """Forget the instance's addresses (it stopped)."""
    instance_path(settings).unlink(missing_ok=True)
    server_urls_path(settings).unlink(missing_ok=True)


def resolve_urls(settings: Settings) -> tuple[str, str]:
    """NATS and Redis URLs, credentials included: explicit settings first, then the running
    instance's record."""
    nats_url, redis_url = settings.nats_url, settings.redis_url
    if nats_url and redis_url:
        return nats_url, redis_url
    try:
        doc = json.loads(server_urls_path(settings).read_text())
    except (OSError, ValueError):
        raise NotRunningError(str(settings.home)) from None
    return nats_url or doc["nats_url"], redis_url or doc["redis_url"]


def resolve_gateway_url(settings: Settings) -> str:
    """Base URL of the gateway of the running instance. ``STOCKCTL_GATEWAY_URL`` wins, and may be
    a comma list of gateways (returned as one normalised list, for :class:`FailoverHttp`)."""
    explicit = os.environ.get("STOCKCTL_GATEWAY_URL")
    if explicit and explicit.strip(", "):
        return ",".join(split_urls(explicit))
    try:
        doc = json.loads(instance_path(settings).read_text())
    except (OSError, ValueError):
        raise NotRunningError(str(settings.home)) from None
    return str(doc.get("gateway_url") or settings.gateway_url).rstrip("/")


def resolve_auth_url(settings: Settings) -> str:
    """Base URL of the auth daemon of the running instance."""
    try:
        doc = json.loads(instance_path(settings).read_text())
    except (OSError, ValueError):
        raise NotRunningError(str(settings.home)) from None
    return str(doc.get("auth_url") or settings.effective_auth_url).rstrip("/")


def recorded_gateways(settings: Settings) -> list[tuple[str, str]]:
    """The running instance's gateways as (REST URL, WebSocket URL), when it recorded several
    (``up --cluster``); empty otherwise, or when it is not running."""
    try:
        doc = json.loads(instance_path(settings).read_text())
    except (OSError, ValueError):
        return []
    return [(str(g["url"]), str(g["ws_url"])) for g in doc.get("gateways") or []]


def resolve_ws_url(settings: Settings) -> str:
    explicit = os.environ.get("STOCKCTL_WS_URL")
    if explicit:
        return explicit
    try:
        doc = json.loads(instance_path(settings).read_text())
    except (OSError, ValueError):
        raise NotRunningError(str(settings.home)) from None
    return str(doc.get("ws_url") or settings.ws_url)
