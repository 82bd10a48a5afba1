"""gateway: the clients' door. REST over HTTP, live channels over WebSocket, JWT on both."""

from daemons.gateway.core import run

__all__ = ["run"]
