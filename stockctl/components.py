"""The names of the components an instance runs: the supervisor's list, in start order.

A module of its own, free of imports, so that the CLI's help texts and shell completion
can name the components without loading the settings machinery (``stockctl.settings``
re-exports these names).
"""

from __future__ import annotations

DAEMONS: tuple[str, ...] = (
    "publisher",
    "processor",
    "matching",
    "auth",
    "gateway",
    "alerts",
    "liquidity",
    "feeds",
    "history",
)
"""Daemons started by ``stockctl up``, in start order (stopped in reverse)."""

SERVERS: tuple[str, ...] = ("nats", "redis")
"""The embedded servers, started before the daemons."""

COMPONENTS: tuple[str, ...] = (*SERVERS, *DAEMONS)
"""Everything ``stockctl up --only`` can name."""

LOG_SOURCES: tuple[str, ...] = ("supervisor", *COMPONENTS)
"""Everything with a log in ``<home>/logs`` (``stockctl logs NAME``)."""


def instance_number(name: str) -> int:
    """``2`` of ``matching-2``; 1 for a name without a number (the one instance of ``up``)."""
    _, _, n = name.rpartition("-")
    return int(n) if n.isdigit() else 1


def base_name(name: str) -> str:
    """``processor`` of ``processor-2`` (``up --cluster`` runs two); other names as they are."""
    base, _, n = name.rpartition("-")
    return base if base and n.isdigit() else name
