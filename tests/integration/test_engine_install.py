"""Installing where the C compile fails still gives a working stockctl: the wheel is pure
Python, and its build stamp says why, which is what ``stockctl doctor`` reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_failing_c_compiler_gives_a_pure_python_wheel_that_says_why(tmp_path: Path) -> None:
    # Arrange: a compiler that fails every call, as on a machine with a broken toolchain
    env = {**os.environ, "CC": "/bin/false", "PIP_NO_INPUT": "1"}

    # Act: build the wheel as `pip install` would (build isolation, the build hook's own deps)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    # Assert: the build succeeded, as a pure wheel, with the engine's source and the reason
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("stockctl-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "stockctl/exchange/engine.py" in names
    assert not [n for n in names if n.startswith("stockctl/exchange/") and n.endswith(".so")]
    stamp = json.loads(zipfile.ZipFile(wheel).read("stockctl/exchange/_engine_build.json"))
    assert "failed" in json.dumps(stamp), stamp
