"""Build hook: compile the matching engine with mypyc, or fall back to pure Python with a warning.

The engine's modules (``stockctl.exchange.COMPILED_MODULES``: units, validation, accounts, book,
engine) are compiled from the same source, as one mypyc group whose shared library lives inside
the package (``stockctl/exchange/_engine__mypyc*.so``). Only these: they are the matching hot path,
and each compiled module adds to the install's compile time. ``opt_level="1"``: on the 2-core machine it compiled
in two thirds of the CPU time of ``"3"`` and ran the bench streams as fast (within the noise).

- A wheel gets the extensions (and a platform tag); an editable install (``pip install -e .``)
  gets them next to the sources, where the editable path finds them.
- mypy (mypyc), setuptools and msgspec are build dependencies only where compiling is tried.
- If compiling fails (no C compiler, no Python headers, mypyc refusing the code), the install
  still succeeds, pure Python, and the reason is printed (``pip install -v`` shows it) and kept in
  ``stockctl/exchange/_engine_build.json``, where ``stockctl doctor`` reads it.
- ``STOCKCTL_ENGINE_BUILD=pure`` skips compiling (e.g. to install quickly); ``STOCKCTL_ENGINE=pure``
  at run time chooses the source over an installed compiled build.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = "stockctl/exchange"
MODULES = ("units", "validation", "accounts", "book", "engine")  # = stockctl.exchange.COMPILED_MODULES
GROUP = "stockctl.exchange._engine"
STAMP = "_engine_build.json"

_SETUP = """\
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(
    name="stockctl-engine",
    ext_modules=mypycify(sys.argv.pop(1).split(","), opt_level="1", debug_level="0", group_name={group!r}),
)
"""


def _skip_reason() -> str | None:
    """Why not even to try compiling, before the build installs mypy for it (or None: try)."""
    if os.environ.get("STOCKCTL_ENGINE_BUILD", "").strip().lower() == "pure":
        return "STOCKCTL_ENGINE_BUILD=pure at install"
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc} not found)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h; e.g. the python3-dev package)"
    return None


class EngineBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        """mypyc, setuptools, and msgspec (whose types the engine's are checked against), only when
        compiling will be tried: an install that cannot compile does not fetch them."""
        if _skip_reason() is not None:
            return []
        return ["mypy>=1.11", "setuptools>=68", "msgspec>=0.18"]

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        pkg = Path(self.root) / PACKAGE
        editable = version == "editable"
        if editable:  # the tree is what an editable install imports: a previous build's files go
            for old in self._artifacts(pkg):
                old.unlink()
        sources = {f"{m}.py": hashlib.sha256((pkg / f"{m}.py").read_bytes()).hexdigest() for m in MODULES}
        skip = _skip_reason()
        built, reason = ([], skip) if skip is not None else self._compile(pkg)
        if not built:
            self.app.display_warning(
                f"stockctl: the matching engine is NOT compiled ({reason}); it installs as pure Python"
                " (correct, slower). Install a C compiler and the Python headers, then reinstall, to compile it."
            )
        stamp = {"compiled": bool(built), "reason": reason, "sources": sources if built else {}}
        # A wheel's stamp is made outside the tree, which a wheel build leaves as it is (an
        # editable install of the same tree keeps its own build).
        self._work = getattr(self, "_work", None) or Path(tempfile.mkdtemp(prefix="stockctl-mypyc-"))
        stamp_path = pkg / STAMP if editable else self._work / STAMP
        stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
        if editable:
            for so in built:  # beside the sources: the editable install imports from the tree
                shutil.copy2(so, pkg / so.name)
        else:
            for so in built:
                build_data["force_include"][str(so)] = f"{PACKAGE}/{so.name}"
            build_data["force_include"][str(stamp_path)] = f"{PACKAGE}/{STAMP}"
        if built:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _artifacts(pkg: Path) -> list[Path]:
        names = [*MODULES, GROUP.rsplit(".", 1)[1] + "__mypyc"]
        return [Path(p) for n in names for p in glob.glob(str(pkg / f"{n}.*.so")) + glob.glob(str(pkg / f"{n}.*.pyd"))]

    def _compile(self, pkg: Path) -> tuple[list[Path], str]:
        """The compiled extensions (in a temporary directory that lives as long as the build), or
        none and why. mypyc runs in a child process, outside the project (setuptools would read
        its pyproject.toml), on the absolute paths of the modules."""
        work = self._work = Path(tempfile.mkdtemp(prefix="stockctl-mypyc-"))
        (work / "setup.py").write_text(_SETUP.format(group=GROUP))
        paths = ",".join(str(pkg / f"{m}.py") for m in MODULES)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "setup.py", paths, "build_ext", "--build-lib", "lib", "--build-temp", "tmp"],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=900,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return [], f"mypyc could not run: {exc}"
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            tail = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
            return [], f"mypyc/C compile failed: {tail.strip()[:300]}"
        built = [Path(p) for p in glob.glob(str(work / "lib" / PACKAGE / "*.so"))]
        built += [Path(p) for p in glob.glob(str(work / "lib" / PACKAGE / "*.pyd"))]
        if len(built) != len(MODULES) + 1:
            return [], f"mypyc made {len(built)} extensions, expected {len(MODULES) + 1}"
        self.app.display_info(f"stockctl: compiled the matching engine with mypyc in {time.monotonic() - t0:.1f} s")
        return built, "compiled"
