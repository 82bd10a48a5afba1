"""gateway: the clients' door. REST over HTTP, live channels over WebSocket, JWT on both.

* :mod:`~daemons.gateway.core`: the daemon (start-up, serving, shutdown);
* :mod:`~daemons.gateway.tokens`: the auth daemon's keys and the token check of every caller;
* :mod:`~daemons.gateway.exchange_api`: commands and queries to the matching daemon, and the
  answer a command's events make;
* :mod:`~daemons.gateway.views`: what one user may see of an exchange event;
* :mod:`~daemons.gateway.fanout`: channels, clients and the fan-out of NATS messages to them;
* :mod:`~daemons.gateway.ws`: the WebSocket protocol (auth, ops, watchdog);
* :mod:`~daemons.gateway.rest`: the REST API; :mod:`~daemons.gateway.responses`: its JSON answers;
* :mod:`~daemons.gateway.auth_proxy`: ``/auth/*`` passed to the auth daemon;
* :mod:`~daemons.gateway.seeds`: the seed clients' doors on the HTTP port.

What crosses the sockets (messages, frames, close codes) is in :mod:`stockctl.wire.gateway`.
"""

from daemons.gateway.core import DAEMON

__all__ = ["DAEMON"]
