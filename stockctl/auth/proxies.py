"""Which address a request comes from, when proxies may stand in front: the throttles count it.

Contract:

* ``X-Forwarded-For`` is believed only from a peer in ``STOCKCTL_TRUSTED_PROXIES`` (default:
  none, so the socket peer is the client). The header is read right to left through trusted
  hops; the first address that is not a trusted proxy is the client. A client can put what it
  likes on the left of that header, never on the right of what its own proxy appended.
* The gateway passes ``/auth/*`` on to the auth daemon. On one host both listen on loopback,
  where any local process can connect too, so the gateway's *address* proves nothing. Instead
  the gateway proves itself with a secret both daemons read from the state dir
  (``secrets/gateway-proxy.key``, 0600, created by whichever starts first) sent in
  :data:`PROXY_SECRET_HEADER`; auth believes the gateway's ``X-Forwarded-For`` only with it.
  A gateway on another host without that file can be named in ``STOCKCTL_TRUSTED_PROXIES``
  of the auth daemon instead.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
from pathlib import Path

from stockctl.auth.secretfile import create_once

PROXY_SECRET_FILE = "gateway-proxy.key"
PROXY_SECRET_HEADER = "x-stockctl-proxy-secret"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed."""

    def __init__(self, networks: list[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusts(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)

    def client_address(self, peer: str | None, forwarded: list[str] | None = None, peer_trusted: bool = False) -> str:
        """The client's address: ``peer``, or the nearest untrusted hop of ``X-Forwarded-For``
        when ``peer`` is a trusted proxy (or ``peer_trusted``: the gateway proved itself)."""
        if not peer:
            return "unknown"
        ip = _ip(peer)
        if ip is None:
            return peer
        if not (peer_trusted or self.trusts(ip)) or not forwarded:
            return str(ip)
        client = ip
        for hop in reversed([h for h in ",".join(forwarded).split(",") if h.strip()]):
            addr = _ip(hop)
            if addr is None:
                break  # junk can only be the client's own text: the hop after it is the best we know
            client = addr
            if not self.trusts(addr):
                break
        return str(client)


def load_proxy_secret(secrets_dir: Path) -> str:
    """The gateway-to-auth secret of this state dir, created (0600) if there is none yet."""
    path = Path(secrets_dir) / PROXY_SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if text:
            return text
    create_once(path, secrets.token_urlsafe(32) + "\n")  # a daemon that started at the same time may win
    return path.read_text().strip()


def secret_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
