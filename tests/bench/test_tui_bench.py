"""``stockctl bench tui``: a short headless run end to end, and its pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockctl.errors import UsageError
from tests.support.bench import run_quick_json
from tui.bench import TuiBenchOptions, percentile


@pytest.mark.timeout(150)
def test_bench_tui_quick_json(tmp_path: Path) -> None:
    doc = run_quick_json("tui", tmp_path, 120, env={"XDG_CONFIG_HOME": str(tmp_path / "config")}, cwd=tmp_path)

    assert {"rate", "seconds", "input_lag_p50_ms", "input_lag_p99_ms", "fps", "redraws_per_s"} <= set(doc)
    assert doc["rate"] == 1000 and doc["seconds"] == 3
    assert doc["fps"] > 0
    assert doc["lag_samples"] >= 5
    assert 0 < doc["input_lag_p50_ms"] <= doc["input_lag_p99_ms"] <= doc["input_lag_max_ms"]
    # Counted over the same window, so quotes queued just before it may be handled inside it:
    # at most a second's worth more than offered.
    assert doc["quotes_offered"] > 0 and 0 < doc["quotes_handled"] <= doc["quotes_offered"] + doc["rate"]
    assert 0 < doc["redraws_per_s"]["board"] <= doc["fps"]


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_options_are_checked() -> None:
    with pytest.raises(UsageError, match="--rate"):
        TuiBenchOptions(rate=0).check()
    with pytest.raises(UsageError, match="--seconds"):
        TuiBenchOptions(seconds=0.1).check()
