"""``stockctl bench ticks``: a real (short) run end to end, and nothing left running after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockctl.bench.ticks import parse_rates, percentile
from stockctl.errors import UsageError
from tests.support.bench import linux_only, run_private_bench


@pytest.mark.integration
@pytest.mark.timeout(180)
@linux_only
def test_bench_ticks_quick_json(tmp_path: Path) -> None:
    # Afterwards every server and daemon it started must be gone, and so must its temporary directory.
    doc = run_private_bench("ticks", tmp_path, timeout=120)

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
