"""The exchange: markets, order books, accounts (pure engine) and its wire contract.

One source, two builds. The engine's modules (:data:`COMPILED_MODULES`) are plain Python; where
a C compiler exists, ``pip install`` also compiles them with mypyc (``hatch_build.py``), and the
compiled extensions then load instead of the ``.py`` files. Which build runs:

- ``STOCKCTL_ENGINE=pure`` in the environment loads the pure-Python source even when the compiled
  modules are there (a finder ahead of the normal import path, installed before any of them loads);
- a compiled build whose sources changed since it was built (an editable install, edited) is not
  used: the source runs, so an edit is never hidden by a stale build;
- :func:`engine_build` says which one runs, and :func:`engine_build_note` why.

All five load from the same build: compiled modules call each other natively, so a mix is never made.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path

COMPILED_MODULES = ("units", "validation", "accounts", "book", "engine")
"""The engine's modules that a compiled build compiles (the matching rules and their hot path)."""
BUILD_STAMP = "_engine_build.json"
"""Written by the build hook next to these modules: compiled or not, why, and the sources' hashes."""
COMPILED = "compiled (mypyc)"
PURE = "pure Python"

_HERE = Path(__file__).parent


def source_hashes(folder: Path = _HERE) -> dict[str, str]:
    """sha256 of each compiled module's source: what a build stamp records and is checked against."""
    return {
        f"{m}.py": hashlib.sha256((folder / f"{m}.py").read_bytes()).hexdigest()
        for m in COMPILED_MODULES
        if (folder / f"{m}.py").exists()
    }


def _has_extensions() -> bool:
    return any((_HERE / f"engine{suffix}").exists() for suffix in EXTENSION_SUFFIXES)


def _why_pure() -> str | None:
    """Why the source must run although compiled modules may be present, or None."""
    if os.environ.get("STOCKCTL_ENGINE", "").strip().lower() == "pure":
        return "STOCKCTL_ENGINE=pure"
    if not _has_extensions():
        return None
    try:
        stamp = json.loads((_HERE / BUILD_STAMP).read_text())
        built = stamp.get("sources")
    except (OSError, ValueError, AttributeError):
        built = None
    if built != source_hashes():
        return "the sources changed since the compiled build (reinstall: pip install -e .)"
    return None


class _SourceFinder:
    """Finds the engine's modules as their ``.py`` source, ahead of any compiled extension."""

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        package, _, leaf = name.rpartition(".")
        if package != __name__ or leaf not in COMPILED_MODULES:
            return None
        return importlib.util.spec_from_file_location(name, _HERE / f"{leaf}.py")


_FORCED = _why_pure()
if _FORCED is not None:
    sys.meta_path.insert(0, _SourceFinder)  # type: ignore[arg-type]


def engine_build() -> str:
    """Which build of the engine runs in this process: ``"compiled (mypyc)"`` or ``"pure Python"``."""
    from stockctl.exchange import engine

    return PURE if (engine.__file__ or "").endswith(".py") else COMPILED


def engine_build_note() -> str:
    """Why this build runs: the switch, a stale build, or what the install's build hook recorded."""
    if engine_build() == COMPILED:
        return "compiled at install from the same source"
    if _FORCED is not None:
        return _FORCED
    try:
        stamp = json.loads((_HERE / BUILD_STAMP).read_text())
        compiled, reason = stamp.get("compiled"), stamp.get("reason")
    except (OSError, ValueError, AttributeError):
        compiled = reason = None
    if compiled:
        return "the compiled build's files are missing (reinstall: pip install -e .)"
    return f"not compiled at install: {reason}" if reason else "no compiled build installed"


__all__ = ["BUILD_STAMP", "COMPILED", "COMPILED_MODULES", "PURE", "engine_build", "engine_build_note", "source_hashes"]
