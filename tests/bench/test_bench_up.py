"""``stockctl bench up``: a real fresh start measured end to end, and nothing left running after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockctl.components import COMPONENTS
from tests.support.bench import linux_only, run_private_bench


@pytest.mark.integration
@pytest.mark.timeout(240)
@linux_only
def test_bench_up_quick_json_times_every_component_and_stops_them(tmp_path: Path) -> None:
    # Afterwards the instance's servers, daemons and supervisor must be gone, and so must its home.
    doc = run_private_bench("up", tmp_path, timeout=200)

    assert len(doc["runs"]) == 1
    run = doc["runs"][0]
    parts = {p["name"]: p for p in run["parts"]}
    # the default instance: every component but the live feeds (none configured)
    assert list(parts) == [c for c in COMPONENTS if c != "feeds"]
    for name, p in parts.items():
        # started, then (a daemon) its imports done, then ready; all before `up` returned
        assert 0 < p["started_s"] <= p["ready_s"] <= run["ready_s"] <= run["command_s"], name
        if p["kind"] == "daemon":
            assert p["started_s"] < p["main_s"] <= p["ready_s"], name
            assert p["import_s"] == pytest.approx(p["main_s"] - p["started_s"], abs=0.002), name
        assert p["cpu_s"] is not None and p["cpu_s"] >= 0, name
    assert run["supervisor_s"] == min(p["started_s"] for p in parts.values())
    assert run["servers_ready_s"] == max(parts["nats"]["ready_s"], parts["redis"]["ready_s"])
    assert doc["ready_s"]["median"] == doc["ready_s"]["best"] == run["ready_s"]
    assert doc["ready_met"] == (run["ready_s"] < doc["target_s"])
