"""``stockctl bench ws``: a real (short) run end to end, nothing left running after it, and its parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stockctl.bench_ws import WsBenchOptions, client_frame, hist_percentile, parse_symbols
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
@pytest.mark.timeout(200)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find leftover processes")
def test_bench_ws_quick_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")}
    env["TMPDIR"] = str(tmp_path)  # the bench's temporary dir (and every child's cwd) lands here
    env["STOCKCTL_HOME"] = str(tmp_path / "home")  # and no real instance is looked at
    assert _procs_under(tmp_path) == []

    proc = subprocess.run(
        [sys.executable, "-m", "stockctl", "bench", "ws", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON document

    for key in ("clients", "connected", "msgs_per_s", "p50_ms", "p99_ms", "dropped", "connect_s", "cpu", "targets"):
        assert key in doc, key
    assert doc["clients"] == 50
    assert doc["connected"] == doc["clients"]
    assert doc["dropped"] == 0, (doc["fail_reasons"], doc["close_reasons"])
    assert doc["msgs_per_s"] > 0
    assert 0 < doc["p50_ms"] <= doc["p99_ms"] <= doc["max_ms"]
    assert doc["connect_s"] > 0 and 0 < doc["connect_p50_ms"] <= doc["connect_p99_ms"]
    # Every client got (nearly) every quote published on its channel in the window.
    assert doc["expected"] > 0
    assert doc["quotes"] >= 0.9 * doc["expected"], doc
    assert "gateway" in doc["cpu"] and "workers" in doc["cpu"]

    # Every server, daemon and client worker it started is gone, and so is its temporary directory.
    assert _procs_under(tmp_path) == []
    assert not list(tmp_path.glob("stockctl-bench-*"))


def test_client_frames_are_masked_and_sized() -> None:
    for size in (0, 5, 125, 126, 400, 70_000):
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        frame = client_frame(0x1, payload)
        assert frame[0] == 0x81
        assert frame[1] & 0x80  # a client always masks
        length, offset = frame[1] & 0x7F, 2
        if length == 126:
            length, offset = int.from_bytes(frame[2:4], "big"), 4
        elif length == 127:
            length, offset = int.from_bytes(frame[2:10], "big"), 10
        assert length == size
        key, body = frame[offset : offset + 4], frame[offset + 4 :]
        assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == payload


def test_hist_percentile_nearest_rank() -> None:
    hist = {i: 1 for i in range(1, 101)}
    assert hist_percentile(hist, 0.50) == 50
    assert hist_percentile(hist, 0.99) == 99
    assert hist_percentile({3: 98, 70: 2}, 0.99) == 70
    assert hist_percentile({7: 1}, 0.5) == 7
    with pytest.raises(ValueError):
        hist_percentile({}, 0.5)


def test_options_are_checked() -> None:
    assert parse_symbols(" aapl, MSFT,aapl,, ") == ["AAPL", "MSFT"]
    WsBenchOptions().check()
    WsBenchOptions.quick().check()
    for bad in (
        WsBenchOptions(clients=0),
        WsBenchOptions(seconds=0),
        WsBenchOptions(rate=0),
        WsBenchOptions(symbols=[]),
        WsBenchOptions(symbols=["A.B"]),
        WsBenchOptions(symbols=["AAPL"], channels_per_client=2),
        WsBenchOptions(workers=0),
    ):
        with pytest.raises(UsageError):
            bad.check()
