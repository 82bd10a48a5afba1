"""Every latency target a bench names is checked against the step at its rate, and an unrun one says so."""

from __future__ import annotations

from types import SimpleNamespace

from stockctl.bench import orders, ticks
from stockctl.bench.kit import LatencyTarget, latency_verdicts


def step(rate: float, p99: float | None, kept_up: bool = True, probe: bool = False) -> SimpleNamespace:
    return SimpleNamespace(offered_per_s=rate, p99_ms=p99, kept_up=kept_up, probe=probe)


def test_target_met_missed_unmeasured_and_behind() -> None:
    target = LatencyTarget(5_000, 10.0)
    assert target.check([step(2_000, 3.0), step(5_000, 9.9)])["met"] is True
    missed = target.check([step(5_000, 10.0)])
    assert missed["measured"] and not missed["met"] and missed["p99_ms"] == 10.0
    assert target.check([step(2_000, 1.0)])["measured"] is False
    behind = target.check([step(5_000, 2.0, kept_up=False)])
    assert behind["measured"] and not behind["kept_up"] and not behind["met"]
    # A probe step near saturation is not the rate the target names.
    assert target.check([step(5_000, 2.0, probe=True)])["measured"] is False


def test_verdict_line_names_each_target() -> None:
    checks = [LatencyTarget(2_000, 5.0).check([step(2_000, 6.94)]), LatencyTarget(5_000, 10.0).check([])]
    line = latency_verdicts(checks, "orders/s")
    assert "p99 < 5 ms at 2,000 orders/s [bold red]FAIL[/] (6.94 ms)" in line
    assert "p99 < 10 ms at 5,000 orders/s [yellow]not measured[/] (add 5,000 to --rates)" in line


def test_default_steps_cover_every_issue_target() -> None:
    # The issue's targets: orders p99 at 2,000 and 5,000/s, ticks p99 at 1,000 and 10,000/s.
    assert [t.rate for t in orders.LATENCY_TARGETS] == [2_000, 5_000]
    assert [t.rate for t in ticks.LATENCY_TARGETS] == [1_000, 10_000]
    for module in (orders, ticks):
        assert {t.rate for t in module.LATENCY_TARGETS} <= set(module.DEFAULT_RATES)
