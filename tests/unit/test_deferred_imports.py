"""``defer_optional_imports``: a deferred package runs its code at the first use of a name it
defines, not at its import; scans of ``sys.modules`` and submodule imports leave it unrun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import inspect, sys
from stockctl.runtime.process import defer_optional_imports

print(defer_optional_imports(("probepkg", "not_installed_anywhere")))
import probepkg
print("after import", probepkg.__name__, "ran" if "probepkg.ran" in sys.modules else "not run")
inspect.getmodule(inspect)  # what pydantic does for every model: hasattr(__file__) on each module
import probepkg.sub
print("after submodule", probepkg.sub.VALUE, "ran" if "probepkg.ran" in sys.modules else "not run")
print("first use", probepkg.ANSWER, "ran" if "probepkg.ran" in sys.modules else "not run")
print("again", probepkg.ANSWER, type(probepkg).__name__)
try:
    import not_installed_anywhere
except ImportError:
    print("missing stays missing")
"""


def test_a_deferred_package_runs_at_its_first_use_and_a_missing_one_stays_missing(tmp_path: Path) -> None:
    pkg = tmp_path / "probepkg"
    pkg.mkdir()
    # Importing probepkg.ran is the visible trace of the package's own code having run.
    (pkg / "__init__.py").write_text("import probepkg.ran\nANSWER = 42\n")
    (pkg / "ran.py").write_text("")
    (pkg / "sub.py").write_text("VALUE = 'sub'\n")
    out = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "['probepkg']",
        "after import probepkg not run",
        "after submodule sub not run",
        "first use 42 ran",
        "again 42 module",
        "missing stays missing",
    ]
