"""``stockctl up --cluster``: a real cluster on one machine, and ``down`` stops all of it.

3 nats-server nodes (every stream at R3), a Valkey Cluster of 3 primaries and 3 replicas
formed by stockctl itself, and two of each processor, auth, gateway and alerts, and two matching
daemons per market group. It runs with two market groups (``inr`` and ``us``), so four matching
daemons. The test checks what ``status`` lists, that the servers really are clusters (and which
node is what), that the two processors split the partitions and in each group one matching
daemon leads while the other stands by, that orders in both groups and prices go through,
and that ``down`` leaves no process behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import nats
import pytest
import redis

from stockctl.instance.registry import resolve_urls
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import DEFAULT_MARKETS, MarketSpec
from tests.support.cli import Cli, cluster_cli, pid_alive
from tests.support.stack import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SERVERS = [f"nats-{i}" for i in (1, 2, 3)] + [f"redis-{i}" for i in range(1, 7)]
TWICE = [f"{d}-{n}" for d in ("processor", "auth", "gateway", "alerts") for n in (1, 2)]
MATCHING = [f"matching-{n}" for n in (1, 2, 3, 4)]  # matching-1 and -3 serve group inr, -2 and -4 group us
AAPL = MarketSpec("AAPL_USD", "AAPL", "USD", "0.01", "1", "1", "100000", "1000000")


def _rows(cli: Cli) -> dict[str, dict]:
    return {r["name"]: r for r in cli.json("status")}  # type: ignore[union-attr]


SERVER_ROLES = {"meta leader": 1, "follower": 2, "primary": 3, "replica": 3}


def _server_roles(cli: Cli) -> dict[str, int]:
    """How many servers ``status`` shows in each cluster role."""
    roles = [str((r.get("role") or {}).get("role")) for n, r in _rows(cli).items() if n in SERVERS]
    return {role: roles.count(role) for role in set(roles)}


def _roles_settled(cli: Cli) -> bool:
    rows = _rows(cli)
    held = [len((rows[f"processor-{n}"].get("partitions") or {}).get("partitions") or []) for n in (1, 2)]
    groups = [
        sorted(str((rows[f"matching-{n}"].get("role") or {}).get("role")) for n in pair) for pair in ((1, 3), (2, 4))
    ]
    return held == [4, 4] and groups == [["active", "standby"], ["active", "standby"]]


def test_up_cluster_runs_a_cluster_and_two_of_each_role_and_down_stops_all(tmp_path: Path) -> None:
    cli = cluster_cli(tmp_path / "home")
    markets = tmp_path / "markets.json"
    markets.write_bytes(msgspec.json.encode([*DEFAULT_MARKETS, AAPL]))
    cli.env |= {"STOCKCTL_SYMBOLS": "AAPL,MSFT", "STOCKCTL_RATE": "5", "STOCKCTL_MARKETS_FILE": str(markets)}
    cli.env |= {"STOCKCTL_MARKET_GROUPS": "inr=TATA_INR,JIO_INR;us=AAPL_USD"}
    cli.env |= {"STOCKCTL_DEMO_BALANCES": "INR=1000000,TATA=1000,JIO=1000,USD=100000,AAPL=1000"}
    pids: list[int] = []
    try:
        cli.run("up", "--cluster", check=True, timeout=180)
        rows = _rows(cli)
        pids = [int(r["pid"]) for r in rows.values() if r.get("pid")]

        # Every node and instance, each running with a pid of its own
        assert set(SERVERS + TWICE + MATCHING + ["publisher"]) <= set(rows), sorted(rows)
        assert all(r["state"] == "running" for r in rows.values()), {n: r["state"] for n, r in rows.items()}
        assert len(set(pids)) == len(rows)
        wait_for(lambda: _roles_settled(cli), 60, interval=0.5, what="partitions 4/4 and one matching active per group")
        shown = cli.run("status", check=True).stdout
        assert "leads group inr (TATA_INR,JIO_INR)" in shown and "leads group us (AAPL_USD)" in shown, shown
        wait_for(lambda: _server_roles(cli) == SERVER_ROLES, 30, interval=0.5, what=f"server roles {SERVER_ROLES}")

        # The servers are clusters: streams at R3 led by one of 3 nodes; 3 primaries, 3 replicas
        settings = Settings(home=cli.home)
        nats_url, redis_url = resolve_urls(settings)
        assert nats_url.count(",") == 2 and redis_url.startswith("redis+cluster://")

        async def replicas() -> dict[str, int]:
            nc = await nats.connect(nats_url.split(","))
            try:
                js = nc.jetstream()
                out = {}
                for stream in (names.ORDER_STREAM, names.EVENT_STREAM, names.TICK_STREAM):
                    info = await js.stream_info(stream)
                    out[stream] = info.config.num_replicas
                return out
            finally:
                await nc.close()

        assert asyncio.run(replicas()) == dict.fromkeys((names.ORDER_STREAM, names.EVENT_STREAM, names.TICK_STREAM), 3)
        host_port = redis_url.split("@", 1)[1].split(",")[0]
        password = redis_url.split("://:", 1)[1].split("@", 1)[0]
        node = redis.Redis(host=host_port.split(":")[0], port=int(host_port.split(":")[1]), password=password)
        flags = [line.split()[2] for line in node.execute_command("CLUSTER", "NODES").decode().splitlines()]
        assert sum("master" in f for f in flags) == 3 and sum("slave" in f for f in flags) == 3, flags

        # It trades and prices, through the gateways the instance recorded (both of them)
        cli.register("ada@example.com")
        for market in ("TATA_INR", "AAPL_USD"):
            placed = cli.run("order", "buy", market, "2@100.5", check=True)
            assert "open" in placed.stdout, placed.stdout
        opens = cli.run("orders", check=True).stdout
        assert "TATA_INR" in opens and "AAPL_USD" in opens, opens
        wait_for(lambda: "AAPL" in cli.run("prices").stdout, 30, what="prices for AAPL")
    finally:
        cli.run("down", timeout=120)
    assert pids and not [p for p in pids if pid_alive(p)], "down left processes running"
