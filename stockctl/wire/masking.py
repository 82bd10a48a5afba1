"""Redaction of credentials in server URLs: what may be logged or shown of a URL.

One helper, used by every log line, status table and error message that names a server.
"""

from __future__ import annotations


def mask_url(url: str | None) -> str | None:
    """``url`` with the secret of its userinfo replaced by ``***``: the one redaction helper.

    ``nats://user:pass@host`` becomes ``nats://user:***@host``, ``redis://:pass@host/0``
    ``redis://:***@host/0`` and a token URL ``nats://tok@host`` ``nats://***@host``. Several
    comma-separated URLs (a NATS server list) are each masked. The userinfo runs to the
    last ``@``, so a password holding ``@`` or ``/`` is masked whole (over-masking a query
    that holds ``@`` is the safe side to err on).
    """
    if not url:
        return url
    return ",".join(_mask_one(part) for part in url.split(","))


def _mask_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    return f"{scheme}://{user + ':***' if colon else '***'}@{rest[at + 1 :]}"
