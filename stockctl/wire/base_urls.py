"""HTTP base URLs as the users give them: one, or a comma list of gateways to fail over between."""

from __future__ import annotations

from collections.abc import Sequence


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """A base URL or a comma list of them, each without its trailing slash; empty entries dropped."""
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    out = [p.strip().rstrip("/") for p in parts if p.strip()]
    if not out:
        from stockctl.errors import UsageError

        raise UsageError("no gateway URL given", "set STOCKCTL_GATEWAY_URL to http://host:8700 (or a comma list)")
    return out
