"""Duplicate keys in a JSON object are refused at the edges, never resolved silently.

``{"market": "A", "market": "B"}`` is valid JSON, and parsers disagree about which value
wins (msgspec and Python's json take the last, others the first), so a proxy, a log or a
second reader could see another request than the one executed. The gateway and auth refuse
such bodies and messages with the key's name: :func:`decode_strict` is a msgspec decode
that refuses them (and invalid UTF-8) with the same error as any other malformed input.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec


class _Found(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _check(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Found(key)
        seen.add(key)


def duplicate_key(data: bytes | str) -> str | None:
    """The first key that appears twice in one object of ``data`` (at any depth), else None.

    Input that is not valid JSON also gives None: the real decoder reports that.
    """
    try:
        json.loads(data, object_pairs_hook=_check)
    except _Found as found:
        return found.key
    except (ValueError, RecursionError):
        return None
    return None


def decode_strict(decoder: msgspec.json.Decoder, raw: str | bytes, where: str) -> Any:
    """``decoder.decode(raw)``, with invalid UTF-8 and duplicate keys as ``msgspec.DecodeError`` too."""
    try:
        value = decoder.decode(raw)
    except UnicodeDecodeError:
        raise msgspec.DecodeError("JSON is malformed: a string is not valid UTF-8") from None
    key = duplicate_key(raw)
    if key is not None:
        raise msgspec.DecodeError(f"duplicate key {key!r} in the {where}")
    return value
