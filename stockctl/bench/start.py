"""``stockctl bench up``: seconds from ``stockctl up`` to every component ready, and where they went.

Each run starts a fresh instance the way a user does, ``python -m stockctl up --json``, in a
home of its own in a temporary directory, on free ports, with no config file and none of the
caller's ``STOCKCTL_*`` (a running instance is not touched). It times the command until it
returns (it returns once every component is ready and the status is printed), then reads:

- the supervisor's ``state.json``: when each component was started and when it became ready;
- each daemon's status file: when its ``main`` began, i.e. the end of its imports;
- ``/proc``: the CPU each process of the instance had used (Linux).

It stops the instance with ``stockctl down``, and the run fails if any process of it is
left. A fresh home means fresh credentials, keys and streams each run: a first start.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stockctl.bench.cpu import process_cpu_ticks
from stockctl.bench.kit import BenchError, ProgressFn, clean_env, machine_doc, no_progress, percentile
from stockctl.instance import infra

TARGET_S = 3.0
"""Issue 13: ``stockctl up`` reaches healthy in under 3 s."""
DEFAULT_RUNS = 5
QUICK_RUNS = 1
UP_TIMEOUT = 120.0
LEFTOVER_GRACE_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Part:
    """One component of one run: seconds from the command's start."""

    name: str
    kind: str
    started_s: float
    main_s: float | None  # a daemon's main() began (its imports done); None for a server
    ready_s: float | None
    cpu_s: float | None

    @property
    def import_s(self) -> float | None:
        return None if self.main_s is None else self.main_s - self.started_s

    @property
    def startup_s(self) -> float | None:
        return None if self.main_s is None or self.ready_s is None else self.ready_s - self.main_s


@dataclass
class UpRun:
    """One ``stockctl up``: its wall time, when the last component was ready, each component."""

    command_s: float
    ready_s: float
    supervisor_s: float  # command start -> first server spawned (the CLI, then the supervisor's start)
    servers_ready_s: float | None  # command start -> every server ready
    supervisor_cpu_s: float | None
    load_before: float
    parts: list[Part] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return sum(p.cpu_s or 0.0 for p in self.parts) + (self.supervisor_cpu_s or 0.0)

    def slowest(self, what: str) -> tuple[str, float]:
        values = [(p.name, getattr(p, what)) for p in self.parts if getattr(p, what) is not None]
        return max(values, key=lambda nv: nv[1]) if values else ("-", 0.0)

    def to_doc(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            **{k: v for k, v in asdict(self).items() if k != "parts"},
            "cpu_s": round(self.cpu_s, 2),
            "parts": [
                {**asdict(p), "import_s": rounded(p.import_s), "startup_s": rounded(p.startup_s)} for p in self.parts
            ],
        }


@dataclass
class UpBenchResult:
    runs: list[UpRun] = field(default_factory=list)
    elapsed_s: float = 0.0

    def _stat(self, values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median": round(statistics.median(ordered), 3),
            "p90": round(percentile(ordered, 0.9), 3),
            "best": round(ordered[0], 3),
        }

    @property
    def ready(self) -> dict[str, float]:
        return self._stat([r.ready_s for r in self.runs])

    @property
    def command(self) -> dict[str, float]:
        return self._stat([r.command_s for r in self.runs])

    def targets(self) -> dict[str, bool]:
        return {"ready_met": self.ready["median"] < TARGET_S}

    def to_doc(self) -> dict[str, Any]:
        return {
            "ready_s": self.ready,
            "command_s": self.command,
            "cpu_s": self._stat([r.cpu_s for r in self.runs]),
            "target_s": TARGET_S,
            **self.targets(),
            "runs": [r.to_doc() for r in self.runs],
            "machine": machine_doc(loadavg=_loadavg()),
            "elapsed_s": round(self.elapsed_s, 1),
        }


def _loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def _env(home: Path, tmp: Path) -> dict[str, str]:
    ports = {
        name: str(infra.free_port())
        for name in ("NATS_PORT", "NATS_MONITOR_PORT", "REDIS_PORT", "GATEWAY_PORT", "WS_PORT", "AUTH_PORT")
    }
    return {
        **clean_env(),
        **{f"STOCKCTL_{k}": v for k, v in ports.items()},
        "STOCKCTL_METRICS_PORT": "0",  # each daemon's ops listener on a free port
        "STOCKCTL_HOME": str(home),
        "STOCKCTL_CONFIG": str(tmp / "no-config.toml"),  # not the caller's config file
    }


def _cpu_s(pid: int | None) -> float | None:
    ticks = process_cpu_ticks(pid) if pid else None
    return None if ticks is None else ticks / CLK_TCK


def _since(t0: float, when: float | None) -> float | None:
    """Seconds from the command's start to ``when`` (a unix time), to the millisecond."""
    return None if not when else round(when - t0, 3)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _stockctl(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stockctl", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def _leftovers(home: Path) -> list[int]:
    """Processes still running with their working dir in ``home`` (the supervisor runs its children there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(home)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def one_run(tmp: Path) -> UpRun:
    """Start, measure and stop one fresh instance in ``tmp``."""
    home = tmp / "home"
    env = _env(home, tmp)
    load = (_loadavg() or [0.0])[0]
    t0 = time.time()
    try:
        up = _stockctl(["up", "--json"], env, tmp)
        command_s = time.time() - t0
        if up.returncode != 0:
            raise BenchError(f"stockctl up exited with {up.returncode}: {up.stderr.strip()[-500:]}")
        state = _read_json(home / "run" / "state.json")
        comps = state.get("components", [])
        parts = []
        for c in comps:
            doc = _read_json(home / "run" / f"{c['name']}.json") if c.get("kind") == "daemon" else {}
            parts.append(
                Part(
                    c["name"],
                    c.get("kind", ""),
                    _since(t0, c.get("started")) or 0.0,
                    _since(t0, doc.get("started")),
                    _since(t0, c.get("ready")),
                    _cpu_s(c.get("pid")),
                )
            )
        if not parts or any(p.ready_s is None for p in parts):
            raise BenchError("stockctl up returned, but state.json does not say when every component was ready")
        servers = [p.ready_s for p in parts if p.kind == "server" and p.ready_s is not None]
        return UpRun(
            command_s=round(command_s, 3),
            ready_s=max(p.ready_s or 0.0 for p in parts),
            supervisor_s=min(p.started_s for p in parts),
            servers_ready_s=max(servers) if servers else None,
            supervisor_cpu_s=_cpu_s((state.get("supervisor") or {}).get("pid")),
            load_before=load,
            parts=parts,
        )
    finally:
        down = _stockctl(["down"], env, tmp)
        # `down` returns once the supervisor let go of its lock; its interpreter exits just after.
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        while (left := _leftovers(home)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if down.returncode != 0 or left:
            raise BenchError(f"stockctl down left processes {left} (exit {down.returncode}: {down.stderr.strip()})")


def run_up_bench(runs: int = DEFAULT_RUNS, progress: ProgressFn = no_progress) -> UpBenchResult:
    """``runs`` fresh instances, one after another."""
    started = time.perf_counter()
    result = UpBenchResult()
    for i in range(runs):
        progress(f"run {i + 1} of {runs}: stockctl up")
        tmp = Path(tempfile.mkdtemp(prefix="stockctl-bench-up-"))
        try:
            result.runs.append(one_run(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result.elapsed_s = time.perf_counter() - started
    return result
