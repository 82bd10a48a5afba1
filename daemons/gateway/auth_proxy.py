"""``/auth/*`` on the gateway: the auth daemon's routes passed through, so a client needs one base URL.

Only paths that stay under ``/auth/`` however they are decoded are passed (:func:`inside_auth`);
any other is refused with 404.
"""

from __future__ import annotations

from urllib.parse import unquote


def inside_auth(raw_path: str) -> bool:
    """True if ``raw_path`` stays under ``/auth/`` however it is decoded: no ``.`` or ``..``
    segment (also as ``%2e``, ``%252e``...), no backslash, no encoded slash."""
    path = raw_path
    for _ in range(4):  # undo layered percent-encoding; a fifth layer is refused below
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        return False
    if "\\" in path or not path.startswith("/auth/") or path.count("/") != raw_path.count("/"):
        return False
    return not any(seg in (".", "..") for seg in path.split("/"))
