"""matching: applies exchange commands in stream order and records every outcome."""

from daemons.matching.core import DAEMON

__all__ = ["DAEMON"]
