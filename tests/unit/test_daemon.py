"""The Daemon lifecycle end to end, as real processes: a dead child task means exit 1, with
the reason in the log; SIGTERM means a clean exit 0; the status file goes with the process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = '''
import asyncio
import sys

from stockctl.runtime.daemon import Daemon, main


class Boom(Daemon):
    """A child task that raises, or returns, or runs forever, as argv[1] says."""

    async def startup(self, stack):
        self.spawn(getattr(self, sys.argv[1])(), "exploder")
        self.status.info["mode"] = sys.argv[1]

    async def raises(self):
        await asyncio.sleep(0.3)
        raise RuntimeError("the flux capacitor broke")

    async def returns(self):
        await asyncio.sleep(0.3)

    async def forever(self):
        await asyncio.Event().wait()

    async def main_loop(self):
        await self.stop.wait()

    async def shutdown(self):
        self.log.info("shutdown ran")


main("boom", Boom)
'''


def start(tmp_path: Path, mode: str, fmt: str = "text") -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "boom.py"
    script.write_text(SCRIPT)
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "STOCKCTL_HOME": str(home),
        "STOCKCTL_METRICS_PORT": "0",
        "STOCKCTL_LOG_FORMAT": fmt,
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), mode], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    return proc, home / "run" / "boom.json"


def wait_ready(status: Path, proc: subprocess.Popen[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}:\n{proc.communicate()[1]}")
        try:
            doc = json.loads(status.read_text())
            if doc["ready"]:
                return doc
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError("the daemon never became ready")


def test_a_child_task_that_raises_stops_the_daemon_with_exit_1_and_says_why(tmp_path: Path) -> None:
    # Arrange / Act
    proc, status = start(tmp_path, "raises")
    _, log = proc.communicate(timeout=60)

    # Assert: exit 1, the task, the exception and its traceback in the log; shutdown still ran
    assert proc.returncode == 1, log
    assert "task exploder died: RuntimeError: the flux capacitor broke; stopping (exit 1)" in log
    assert "Traceback" in log and 'raise RuntimeError("the flux capacitor broke")' in log
    assert "shutdown ran" in log and "stopped (exit 1)" in log
    assert not status.exists()


def test_a_child_task_that_returns_early_is_a_failure_too(tmp_path: Path) -> None:
    proc, status = start(tmp_path, "returns")
    _, log = proc.communicate(timeout=60)

    assert proc.returncode == 1, log
    assert "task exploder ended on its own; stopping (exit 1)" in log
    assert not status.exists()


def test_the_reason_is_a_json_line_with_the_traceback_in_json_logs(tmp_path: Path) -> None:
    proc, _ = start(tmp_path, "raises", fmt="json")
    _, log = proc.communicate(timeout=60)

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is JSON
    (died,) = [x for x in lines if "died" in x["msg"]]
    assert proc.returncode == 1
    assert died["level"] == "error" and died["daemon"] == "boom"
    assert "RuntimeError: the flux capacitor broke" in died["exc"]


def test_sigterm_is_a_clean_stop_with_exit_0(tmp_path: Path) -> None:
    # Arrange
    proc, status = start(tmp_path, "forever")
    doc = wait_ready(status, proc)

    # Act
    proc.send_signal(signal.SIGTERM)
    _, log = proc.communicate(timeout=60)

    # Assert
    assert doc["pid"] == proc.pid and doc["info"]["mode"] == "forever" and doc["info"]["ops"]
    assert proc.returncode == 0, log
    assert "shutdown ran" in log and log.rstrip().endswith("stopped")
    assert "exit 1" not in log and "Traceback" not in log
    assert not status.exists()
