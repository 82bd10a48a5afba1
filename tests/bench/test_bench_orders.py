"""``stockctl bench orders``: a real (short) run end to end, and nothing left running after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockctl.bench.orders import parse_order_rates, price_text
from stockctl.bench.submitters import OrderFlow, fund_command
from stockctl.errors import UsageError
from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import DEFAULT_MARKETS, Cancel, Place
from tests.support.bench import linux_only, run_private_bench


@pytest.mark.integration
@pytest.mark.timeout(240)
@linux_only
def test_bench_orders_quick_json(tmp_path: Path) -> None:
    # Afterwards every server and daemon it started must be gone, and so must its temporary directory.
    doc = run_private_bench("orders", tmp_path, timeout=180)

    for key in ("orders_per_s", "p50_ms", "p99_ms", "baseline_msgs_per_s", "steps", "targets"):
        assert key in doc, key
    assert doc["orders_per_s"] > 0
    assert doc["baseline_msgs_per_s"] > 0
    assert 0 < doc["p50_ms"] <= doc["p99_ms"]
    assert doc["via"] == "nats"
    assert [s["offered_per_s"] for s in doc["steps"]] == [200, 500]
    for step in doc["steps"]:
        assert step["sent"] > 0
        assert step["drained"], step
        assert step["errors"] == 0, step
        assert step["acked"] == step["sent"], step  # every command got its reply
        assert step["p50_ms"] <= step["p90_ms"] <= step["p99_ms"] <= step["max_ms"]
    # The flow really trades and cancels (not only orders resting on a quiet book).
    assert sum(s["outcome"].get("trades", 0) for s in doc["steps"]) > 0
    assert sum(s["outcome"].get("cancelled_user", 0) for s in doc["steps"]) > 0


def test_parse_order_rates() -> None:
    assert parse_order_rates("2k, 500,1000,500") == [500, 1000, 2000]
    with pytest.raises(UsageError, match="orders per second"):
        parse_order_rates("fast")


def test_price_text() -> None:
    assert price_text(2001, "0.05") == "100.05"
    assert price_text(1, "0.05") == "0.05"
    assert price_text(7, "1") == "7"


def test_order_flow_on_the_engine() -> None:
    """The flow's commands are valid on the real engine: orders rest, trade and get cancelled, few rejects."""
    ex = Exchange()
    users = [f"u{i}" for i in range(4)]
    for u in users:
        ex.apply(fund_command(u, DEFAULT_MARKETS))
    flow = OrderFlow(users, DEFAULT_MARKETS, seed=1)
    kinds = {"place": 0, "cancel": 0}
    for i in range(5_000):
        cmd = flow.next(1_000 + i)
        kinds["place" if isinstance(cmd, Place) else "cancel"] += 1
        assert isinstance(cmd, Place | Cancel)
        flow.observe(ex.apply(cmd))
    out = flow.outcome
    assert kinds["cancel"] > 500
    assert out["trades"] > 500
    assert out["cancelled_user"] > 500
    rejected = sum(n for k, n in out.items() if k.startswith("rejected_"))
    assert rejected == 0, out  # replies arrive in order here, so no cancel ever misses
    assert not ex.audit()
