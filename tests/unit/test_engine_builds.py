"""The engine's two builds, compiled (mypyc) and pure Python, are one engine: the same seeded
commands give the same events, byte for byte, and the same final snapshot.

The compiled build runs in this process (it is the default wherever a C compiler and the Python
headers exist, and this asserts it, so CI tests both builds); the pure build in a child process
started with ``STOCKCTL_ENGINE=pure``, given the very same encoded commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from stockctl.bench.matching import make_stream
from stockctl.exchange import COMPILED, PURE, engine_build, engine_build_note
from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import Command, command_decoder, encode

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = 100_000

# In the child: decode the commands (one JSON per line), apply them to a fresh engine, write every
# event encoded (one per line, a blank line after each command's events) and then the snapshot.
_CHILD = """
import sys
from stockctl.exchange import engine_build
from stockctl.wire.exchange import command_decoder
from tests.unit.test_engine_builds import run_encoded
commands = [command_decoder.decode(line) for line in open(sys.argv[1], "rb").read().splitlines()]
events, snap = run_encoded(commands)
open(sys.argv[2], "wb").write(engine_build().encode() + b"\\n" + snap + b"\\n" + events)
"""


def run_encoded(commands: list[Command]) -> tuple[bytes, bytes]:
    """Every event of ``commands`` on a fresh default exchange, encoded, and its final snapshot."""
    ex = Exchange()
    out: list[bytes] = []
    for cmd in commands:
        out.extend(encode(e) for e in ex.apply(cmd))
        out.append(b"")
    assert ex.audit() == []
    return b"\n".join(out), ex.snapshot()


def _compiler_present() -> bool:
    include = sysconfig.get_paths().get("include", "")
    cc = (os.environ.get("CC") or "cc").split()[0]
    return shutil.which(cc) is not None and (Path(include) / "Python.h").exists()


def test_the_compiled_build_is_what_runs_where_a_compiler_exists() -> None:
    if os.environ.get("STOCKCTL_ENGINE", "").strip().lower() == "pure":
        assert engine_build() == PURE
        pytest.skip("STOCKCTL_ENGINE=pure: the pure build runs, as asked")
    if not _compiler_present():
        pytest.skip("no C compiler or no Python headers here: the pure build is the only one")
    assert engine_build() == COMPILED, (
        f"a C compiler exists but the engine runs as {engine_build()} ({engine_build_note()}):"
        " reinstall with `pip install -e .` and see `pip install -v` for why it did not compile"
    )


@pytest.mark.parametrize("extended", [False, True], ids=["classic", "extended"])
def test_both_builds_give_the_same_events_byte_for_byte(extended: bool, tmp_path: Path) -> None:
    stream = make_stream(COMMANDS, seed=11, extended=extended)
    commands = [*stream.funding, *stream.commands]
    (tmp_path / "commands").write_bytes(b"\n".join(encode(c) for c in commands))
    assert [command_decoder.decode(encode(c)) for c in commands[:50]] == commands[:50]  # the files carry them exactly

    env = {**os.environ, "STOCKCTL_ENGINE": "pure"}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "commands"), str(tmp_path / "pure")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    build, pure_snap, pure_events = (tmp_path / "pure").read_bytes().split(b"\n", 2)
    assert build.decode() == PURE

    events, snap = run_encoded(commands)
    if events != pure_events:
        mine, theirs = events.split(b"\n"), pure_events.split(b"\n")
        first = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b)
        pytest.fail(f"{engine_build()} and pure differ at event line {first}:\n{mine[first]!r}\n{theirs[first]!r}")
    assert events.count(b"\n") >= len(commands)  # every command answered (at least its separator)
    assert b'"event":"trade"' in events
    assert snap == pure_snap
