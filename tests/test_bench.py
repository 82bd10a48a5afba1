"""``stockctl bench ticks``: a real (short) run end to end, and nothing left running after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stockctl.bench import parse_rates, percentile
from stockctl.errors import UsageError


def _procs_under(root: Path) -> list[str]:
    """Processes whose working dir or command line is inside ``root`` (the bench starts its children there)."""
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


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find leftover processes")
def test_bench_ticks_quick_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")}
    env["TMPDIR"] = str(tmp_path)  # the bench's temporary dir (and every child's cwd) lands here
    env["STOCKCTL_HOME"] = str(tmp_path / "home")  # and no real instance is looked at
    assert _procs_under(tmp_path) == []

    proc = subprocess.run(
        [sys.executable, "-m", "stockctl", "bench", "ticks", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON document

    for key in ("ticks_per_s", "p50_ms", "p99_ms", "baseline_msgs_per_s", "ratio", "steps"):
        assert key in doc, key
    assert doc["ticks_per_s"] > 0
    assert doc["baseline_msgs_per_s"] > 0
    assert 0 < doc["p50_ms"] <= doc["p99_ms"]
    assert doc["ratio"] == pytest.approx(doc["ticks_per_s"] / doc["baseline_msgs_per_s"], abs=1e-4)
    assert [s["offered_per_s"] for s in doc["steps"]] == [500, 2000]
    for step in doc["steps"]:
        assert step["published"] > 0
        assert step["drained"], step
        assert step["quotes"] == step["published"], step  # every tick came back as exactly one quote

    # Every server and daemon it started is gone, and so is its temporary directory.
    assert _procs_under(tmp_path) == []
    assert not list(tmp_path.glob("stockctl-bench-*"))


def test_parse_rates() -> None:
    assert parse_rates("5000, 1000,20k,1000") == [1000, 5000, 20000]
    for bad in ("", "fast", "0", "2000000"):
        with pytest.raises(UsageError):
            parse_rates(bad)


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7], 0.99) == 7
