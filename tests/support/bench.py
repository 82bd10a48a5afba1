"""What the ``stockctl bench`` tests share: a quick run in a subprocess, and the check that nothing outlives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find leftover processes")


def procs_under(root: Path) -> list[str]:
    """Processes whose working dir or command line is inside ``root`` (a bench starts its children there)."""
    found = []
    root_s = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(root_s) or root_s in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()} (cwd {cwd})")
    return found


def run_quick_json(
    bench: str,
    tmp_path: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    args: Sequence[str] = (),
) -> dict[str, Any]:
    """``stockctl bench BENCH --quick --json ARGS`` with no ``STOCKCTL_*`` of ours and its own home; its document."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")}
    full_env["STOCKCTL_HOME"] = str(tmp_path / "home")  # no real instance is looked at
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "stockctl", "bench", bench, "--quick", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # stdout is exactly one JSON document


def run_private_bench(
    bench: str, tmp_path: Path, timeout: float, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> dict[str, Any]:
    """:func:`run_quick_json` for a bench that starts servers; every process it started, and its dir, must be gone."""
    assert procs_under(tmp_path) == []
    # The bench's temporary dir (and so every child's cwd) lands in tmp_path, where procs_under looks.
    doc = run_quick_json(bench, tmp_path, timeout, env={"TMPDIR": str(tmp_path), **(env or {})}, args=args)
    assert procs_under(tmp_path) == []
    assert not list(tmp_path.glob("stockctl-bench-*"))
    return doc
