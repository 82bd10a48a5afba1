"""CPU accounting for the benches, from Linux /proc: per process, machine-wide, and scheduler waits."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# --- CPU accounting (Linux /proc) --------------------------------------------------------


def process_cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process, in clock ticks (Linux ``/proc``), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def _all_cpus_ticks() -> list[int] | None:
    """The ``cpu`` line of ``/proc/stat``: user, nice, system, idle, iowait, irq, softirq, steal (clock ticks)."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = fh.readline().split()
        return [int(v) for v in fields[1:9]]
    except (OSError, ValueError):
        return None


def machine_busy_ticks() -> int | None:
    """Busy time of all CPUs together (``/proc/stat``), in clock ticks, else None."""
    t = _all_cpus_ticks()
    if t is None or len(t) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = t
    return user + nice + system + irq + softirq + steal


def kernel_ticks() -> int | None:
    """irq + softirq + steal time of all CPUs (``/proc/stat``), in clock ticks, else None."""
    t = _all_cpus_ticks()
    return t[5] + t[6] + t[7] if t is not None and len(t) >= 8 else None


def sched_wait_ns(pid: int) -> int | None:
    """Run-queue wait of every thread of a process, in ns (Linux ``/proc/PID/task/*/schedstat``), else None."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                total += int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total


class CpuMeter:
    """Cores used by each process between :meth:`start` and :meth:`stop`.

    ``other`` is what the rest of the machine used meanwhile: a busy neighbour
    explains a slow step.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._t0 = 0.0
        self._c0: dict[str, int | None] = {}
        self._busy0: int | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = {name: process_cpu_ticks(pid) for name, pid in self.pids.items()}
        self._busy0 = machine_busy_ticks()

    def stop(self) -> dict[str, float]:
        dt = time.monotonic() - self._t0
        out: dict[str, float] = {}
        if dt <= 0:
            return out
        for name, pid in self.pids.items():
            before, after = self._c0.get(name), process_cpu_ticks(pid)
            if before is not None and after is not None:
                out[name] = round((after - before) / self.hz / dt, 2)
        busy = machine_busy_ticks()
        if busy is not None and self._busy0 is not None and len(out) == len(self.pids):
            out["other"] = round(max(0.0, (busy - self._busy0) / self.hz / dt - sum(out.values())), 2)
        return out


class SchedWaitMeter:
    """Per process, time spent runnable but waiting for a CPU between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._w0: dict[str, int | None] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._w0 = {name: sched_wait_ns(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        dt = time.monotonic() - self._t0
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            before, after = self._w0.get(name), sched_wait_ns(pid)
            if dt > 0 and before is not None and after is not None:
                out[name] = round(max(0, after - before) / 1e9 / dt, 2)
        return out
