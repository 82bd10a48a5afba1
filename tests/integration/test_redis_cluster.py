"""The stack on a real Valkey Cluster (3 primaries, 3 replicas): every script and transaction
runs (no CROSSSLOT), the data spreads over the primaries, and a primary killed under load
costs no price point and no view entry, once its replica has taken over."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from stockctl.auth.users import list_users
from stockctl.instance import infra
from stockctl.wire import names
from tests.support.cli import Cli
from tests.support.exchange import Ex
from tests.support.stack import Daemon, Servers, stack_settings, wait_for, wipe_exchange
from tests.support.valkeycluster import ValkeyCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA"]
MKT = "TATA_INR"


def _exchange(servers: Servers, cluster: ValkeyCluster, tmp_path: Path, daemons: Callable[..., Daemon]) -> Ex:
    wipe_exchange(servers)
    settings = stack_settings(servers, tmp_path / "home", redis_url=cluster.url, symbols=SYMBOLS, rate=20)
    names_ = ("matching", "processor", "publisher", "auth", "gateway", "alerts")
    return Ex(settings, {name: daemons(name, settings) for name in names_})


def _seqs(cluster: ValkeyCluster, symbol: str) -> list[int]:
    import msgspec

    raw = cluster.cluster_client().lrange(names.history_key(symbol), 0, -1)
    return [msgspec.json.decode(p)[2] for p in raw]


def _place(ex: Ex, email: str, side: str, deadline_s: float = 30) -> float:
    """Place one order as a client would: a 503 from a gateway whose Redis is failing over
    stored nothing (the gateway reads Redis before it publishes), so it is sent again.
    Returns how long the order was refused."""
    started = time.monotonic()
    while True:
        resp = ex.order(email, market=MKT, side=side, qty="2", price="100.50")
        if resp.status_code == 201:
            return time.monotonic() - started
        assert resp.status_code == 503 and "data store" in resp.text, resp.text
        assert time.monotonic() - started < deadline_s, resp.text
        time.sleep(0.2)


def _trade(ex: Ex, seller: str, buyer: str) -> float:
    return max(_place(ex, seller, "sell"), _place(ex, buyer, "buy"))


def test_the_whole_stack_runs_on_a_redis_cluster_spread_over_its_primaries(
    servers: Servers, valkey_cluster: ValkeyCluster, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange
    ex = _exchange(servers, valkey_cluster, tmp_path, daemons)
    alice, bob = "alice@example.com", "bob@example.com"

    # Act: accounts, a trade, an alert, prices
    _trade(ex, alice, bob)
    wait_for(lambda: len(ex.call(bob, "GET", "/api/v1/fills").json()) == 1, 20, what="bob's fill")
    wait_for(lambda: all(len(_seqs(valkey_cluster, s)) >= 5 for s in SYMBOLS), 30, what="prices of every symbol")
    price = Decimal(ex.call(alice, "GET", "/api/v1/prices/AAPL").json()["price"])
    above = str((price * Decimal("1.05")).quantize(Decimal("0.01")))
    alert = ex.call(alice, "POST", "/api/v1/alerts", json={"symbol": "AAPL", "condition": "above", "threshold": above})

    # Assert: each part's reads and writes worked through the cluster client
    assert alert.status_code == 201, alert.text
    assert [a["id"] for a in ex.call(alice, "GET", "/api/v1/alerts").json()["active"]] == [alert.json()["alert"]["id"]]
    assert len(ex.call(alice, "GET", "/api/v1/fills").json()) == 1
    assert len(ex.call(alice, "GET", f"/api/v1/trades/{MKT}").json()) == 1
    prices = ex.call(bob, "GET", "/api/v1/prices").json()
    assert sorted(q["symbol"] for q in prices) == sorted([*SYMBOLS, MKT])  # MKT: its trade price
    assert [u.email for u in list_users(ex.settings)] == [alice, bob]  # the operator's sync client
    # ... and the data is spread: every primary holds keys
    sizes = [valkey_cluster.client(node).dbsize() for node in valkey_cluster.current_primaries()]
    assert len(sizes) == 3 and all(n > 0 for n in sizes), sizes


def test_a_primary_killed_under_load_loses_no_price_point_and_no_fill(
    servers: Servers, valkey_cluster: ValkeyCluster, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange: prices flowing, trades made
    ex = _exchange(servers, valkey_cluster, tmp_path, daemons)
    alice, bob = "alice@example.com", "bob@example.com"
    _trade(ex, alice, bob)
    wait_for(lambda: len(_seqs(valkey_cluster, "AAPL")) >= 20, 30, what="AAPL history")
    victim = valkey_cluster.primary_of(names.quote_key("AAPL"))
    before = _seqs(valkey_cluster, "AAPL")[-1]

    # Act: kill -9 the primary holding AAPL, keep trading while its replica takes over
    victim.kill()
    killed = time.monotonic()
    trades = 1
    refused = 0.0
    for _ in range(3):
        refused = max(refused, _trade(ex, alice, bob))  # while Redis fails over
        trades += 1
    valkey_cluster.wait_promoted(victim, names.quote_key("AAPL"), timeout=30)
    wait_for(lambda: _seqs(valkey_cluster, "AAPL")[-1] > before + 40, 60, what="AAPL prices past the failover")
    recovered = time.monotonic() - killed

    # Assert: AAPL's history runs on with no gap and no duplicate across the failover
    seqs = _seqs(valkey_cluster, "AAPL")
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"gap or duplicate in {seqs}"
    # ... every trade's fills are in the views exactly once
    for email in (alice, bob):
        fills = wait_for(
            lambda e=email: (f := ex.call(e, "GET", "/api/v1/fills").json()) and len(f) >= trades and f,
            30,
            what=f"{email}'s fills",
        )
        ids = [f["trade_id"] for f in fills]  # type: ignore[union-attr]
        assert len(ids) == len(set(ids)) == trades, ids
    print(f"redis primary kill: orders refused for {refused:.2f} s; prices 40 past the kill in {recovered:.2f} s")


def test_an_operator_command_says_in_one_line_that_no_cluster_node_answers(tmp_path: Path) -> None:
    # Arrange: a cluster URL whose one node is not there
    port = infra.free_port()
    cli = Cli(tmp_path / "home")
    cli.env |= {
        "STOCKCTL_REDIS_URL": f"redis+cluster://:pw@127.0.0.1:{port}",
        "STOCKCTL_NATS_URL": "nats://127.0.0.1:1",
    }

    # Act
    res = cli.run("users", "list")

    # Assert: one line, the password masked, the fix named, no traceback
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == [res.stderr.strip()], res.stderr
    assert "cannot reach Redis at redis+cluster://:***@127.0.0.1" in res.stderr and "stockctl status" in res.stderr
