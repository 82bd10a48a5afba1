"""Private files created once: a secret is written whole, mode 0600, and never replaced.

:func:`create_once` writes the text to a private temp file beside ``path``
(:func:`stockctl.servercreds.write_private`) and hard-links it into place. ``link`` is atomic
and fails if the name exists, so a reader never sees half a file, and of several processes
racing to create the same secret exactly one wins; the others read the winner's. The caller
reads the file after it, whoever wrote it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from stockctl.servercreds import write_private


def create_once(path: Path, text: str) -> bool:
    """Create ``path`` (0600, parent 0700) holding ``text`` unless it exists; True if this call made it."""
    tmp = write_private(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new"), text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:  # someone else won the race: theirs stands
        return False
    finally:
        tmp.unlink(missing_ok=True)
