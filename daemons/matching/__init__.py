"""matching: applies exchange commands in stream order and records every outcome."""

from daemons.matching.core import run

__all__ = ["run"]
