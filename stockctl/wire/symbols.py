"""What a ticker symbol may be: the one check every door (settings, CSV, CLI, REST, WebSocket,
feeds, TUI) runs before a symbol goes anywhere.

A symbol is 1-32 ASCII characters: letters and digits, ``_``, and the separators ``.``, ``-`` and
``/`` between them, so real tickers pass as they are spelled: ``BRK.B``, ``BF-B``, ``BTC-USD``,
``BTC/USDT``, ``TATA_INR``, ``1INCHUSDT``. It is compared in upper case (``brk.b`` is ``BRK.B``).

Refused, each with its own reason: control characters, whitespace, the NATS wildcards ``*`` and
``>``, anything that is not ASCII (a Cyrillic ``А`` or a fullwidth ``Ａ`` looks like a Latin ``A``
and must not become a second, look-alike symbol), a separator at either end or next to another
(so no ``..`` or ``/`` path tricks), and anything longer than 32 characters.

The check runs on the text as given, *before* upper-casing: ``str.upper`` maps some non-ASCII
letters to ASCII (``ﬀ`` -> ``FF``, ``ı`` -> ``I``), which would let a look-alike in. How a symbol
is spelled inside NATS subjects and Redis keys is :func:`stockctl.wire.names.symbol_token`.
"""

from __future__ import annotations

import re
import unicodedata

from stockctl.errors import UsageError

MAX_LEN = 32

#: The grammar, matched with ``fullmatch`` (``$`` would accept a trailing newline).
SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9_]*(?:[./-][A-Z0-9_]+)*", re.ASCII)

RULE = "symbols are 1-32 of A-Z, 0-9, _ and the separators . - / between them (e.g. BRK.B, BTC-USD, BTC/USDT)"


def _problem(text: str) -> str | None:
    """Why ``text`` is not a symbol (checked before upper-casing), or None if it is one."""
    if not text:
        return "it is empty"
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or unicodedata.category(ch) in ("Cc", "Cf"):
            return f"control character U+{code:04X} is not allowed"
        if ch.isspace():
            return "spaces are not allowed"
        if ch in "*>":
            return f"{ch!r} is a wildcard, not part of a symbol"
        if code > 0x7E:
            name = unicodedata.name(ch, "unnamed")
            return f"{ch!r} (U+{code:04X} {name}) is not ASCII; type the Latin letter it looks like"
    if len(text) > MAX_LEN:
        return f"it is {len(text)} characters long; at most {MAX_LEN}"
    upper = text.upper()
    if SYMBOL_PATTERN.fullmatch(upper):
        return None
    bad = next((ch for ch in upper if not (ch.isalnum() or ch in "_./-")), None)
    if bad is not None:
        return f"{bad!r} is not allowed"
    return "a separator (. - /) must stand between letters or digits"


def parse_symbol(text: str) -> str:
    """``text`` (surrounding spaces trimmed) as a canonical upper-case symbol, or UsageError
    (a 400 ``usageerror`` at the gateway, exit 2 in the CLI) naming what is wrong and the rule."""
    stripped = text.strip(" ")
    problem = _problem(stripped)
    if problem is not None:
        raise UsageError(f"bad symbol {text[:40]!r}: {problem}", RULE)
    return stripped.upper()


def is_symbol(text: str) -> bool:
    """Whether ``text`` is a canonical symbol already (upper case, nothing to trim)."""
    return _problem(text) is None and text == text.upper()
