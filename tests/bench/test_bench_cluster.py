"""``stockctl bench ticks --cluster`` and ``bench orders --cluster``: real (short) runs on a private
``up --cluster`` cluster, end to end, every figure measured, and nothing left running after them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stockctl.bench import orders, orders_cluster, ticks, ticks_cluster
from stockctl.cli import app
from tests.support.bench import linux_only, run_private_bench

NODES = {"nats-1", "nats-2", "nats-3", "redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "redis-6"}
"""The up --cluster nodes, by the names the CPU rows carry."""


def cluster_run(bench: str, tmp_path: Path) -> dict[str, Any]:
    # The cluster's ports in this test worker's range, if it has one (no other STOCKCTL_* of ours reaches it).
    span = os.environ.get("STOCKCTL_FREE_PORTS")
    env = {"STOCKCTL_FREE_PORTS": span} if span else None
    doc = run_private_bench(bench, tmp_path, timeout=150, args=["--cluster"], env=env)
    assert doc["cluster"] == {"nats_nodes": 3, "valkey_nodes": 6, "valkey_primaries": 3, "stream_replicas": 3}
    assert doc["baseline_msgs_per_s"] > 0
    assert doc["machine"]["loadavg_1m_start"] is not None and doc["machine"]["loadavg_1m_end"] is not None
    return doc


def assert_cpu_rows(cpu: dict[str, float], daemons: set[str]) -> None:
    """A row for every node, every daemon, this process and the rest of the machine, each a measured figure."""
    assert set(cpu) == NODES | daemons | {"bench", "other"}, cpu
    assert all(isinstance(v, float | int) and v >= 0 for v in cpu.values()), cpu
    # Every NATS node (R3: each stores every message) and the driver worked in the step; a Valkey
    # replica may round to 0.00 cores in 2 s, the Valkey nodes together may not.
    assert all(cpu[n] > 0 for n in ("nats-1", "nats-2", "nats-3", "bench")), cpu
    assert sum(cpu[n] for n in NODES if n.startswith("redis-")) > 0, cpu


def assert_positive(doc: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(doc[key], float | int) and doc[key] > 0, (key, doc[key])


def assert_sustained(config: dict[str, Any], *keys: str) -> None:
    """The headline figures (sustained rate, its ratios) say what the steps say: above 0 exactly when
    a step kept up. Whether one does at these quick rates depends on how busy the machine is, and
    a bench, not a test, is where a rate is a target."""
    kept = [s["offered_per_s"] for s in config["steps"] if s["kept_up"]]
    for key in keys:
        assert isinstance(config[key], float | int) and (config[key] > 0) == bool(kept), (key, config[key], kept)


@pytest.mark.integration
@pytest.mark.timeout(180)
@linux_only
def test_bench_ticks_cluster_quick_json(tmp_path: Path) -> None:
    doc = cluster_run("ticks", tmp_path)
    assert_positive(doc, "js_baseline_msgs_per_s")
    configs = doc["configs"]
    first, last = configs[0]["ticks_per_s"], configs[-1]["ticks_per_s"]
    assert doc["scaling"] is None if first == 0 else abs(doc["scaling"] - last / first) < 0.01, doc["scaling"]
    assert [c["name"] for c in configs] == ["1 processor", "2 processors"]
    assert [c["processors"] for c in configs] == [["processor-1"], ["processor-1", "processor-2"]]
    for c in configs:
        assert_positive(c, "p50_ms", "p99_ms", "max_delivered_ticks_per_s")
        assert_sustained(c, "ticks_per_s", "ratio", "js_ratio")
        assert c["p50_ms"] <= c["p99_ms"]
        # Every partition held by exactly one processor, each of them holding some.
        held = [p for ps in c["partitions"].values() for p in ps]
        assert sorted(held) == list(range(8)) and all(c["partitions"].values()), c["partitions"]
        assert [s["offered_per_s"] for s in c["steps"]] == [500, 2000]
        for step in c["steps"]:
            assert step["drained"], step
            assert step["quotes"] == step["published"] > 0, step  # every tick came back as one quote
            assert_cpu_rows(step["cpu"], set(c["processors"]))
            assert all(step["processor_ticks"][p] > 0 for p in c["processors"]), step["processor_ticks"]
        assert c["cpu"] and c["cpu_at_ticks_per_s"] in (500, 2000)
        assert set(c["idle_cpu"]) == set(c["cpu"])  # the same processes, metered with nothing offered


@pytest.mark.integration
@pytest.mark.timeout(180)
@linux_only
def test_bench_orders_cluster_quick_json(tmp_path: Path) -> None:
    doc = cluster_run("orders", tmp_path)
    assert_positive(doc, "baseline_rtt_p50_ms")
    assert doc["via"] == "nats"
    assert doc["markets"] == ["TATA_INR", "AAPL_USD"]
    one, two = doc["configs"]
    assert (one["name"], one["groups"], two["name"], two["groups"]) == ("1 group", 1, "2 groups", 2)
    # One leader and its standby, then a leader and a standby per group (matching-1/-3, -2/-4)
    assert sorted(one["roles"].values()) == ["active", "standby"]
    assert {two["roles"][n] for n in ("matching-1", "matching-3")} == {"active", "standby"}
    assert {two["roles"][n] for n in ("matching-2", "matching-4")} == {"active", "standby"}
    for config in (one, two):
        assert_positive(config, "p50_ms", "p99_ms", "max_delivered_orders_per_s")
        assert_sustained(config, "orders_per_s", "ratio")
        assert config["p50_ms"] <= config["p99_ms"]
        assert [s["offered_per_s"] for s in config["steps"]] == [200, 500]
        actives = [n for n, role in config["roles"].items() if role == "active"]
        for step in config["steps"]:
            assert step["drained"] and step["errors"] == 0, step
            assert step["acked"] == step["sent"] > 0, step
            assert_cpu_rows(step["cpu"], set(config["roles"]))
            assert all(step["cpu"][n] > 0 for n in actives), (actives, step["cpu"])  # each group's leader works
        assert sum(s["outcome"].get("trades", 0) for s in config["steps"]) > 0
        assert set(config["idle_cpu"]) == set(config["cpu"])  # the same processes, metered with nothing offered


@pytest.mark.parametrize("bench", ["ticks", "orders"])
def test_cluster_help_matches_the_bench(bench: str) -> None:
    # The --help of a bench shows its real default rates and says what --cluster leaves out.
    result = CliRunner().invoke(app, ["bench", bench, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = "".join(result.output.replace("│", "").split())  # wrapping may split any word
    rates = (ticks if bench == "ticks" else orders).DEFAULT_RATES
    cluster_rates = (ticks_cluster if bench == "ticks" else orders_cluster).CLUSTER_RATES
    listed = ",".join(str(r) for r in rates) + ";with--cluster" + ",".join(str(r) for r in cluster_rates)
    assert f"[default:({listed})]" in text
    assert "--cluster" in text
    assert ("--backlogisnotmeasuredthere" if bench == "ticks" else "--via-gatewayisnotmeasuredthere") in text
