"""Operability: health and readiness probes, Prometheus metrics, JSON logs with request ids."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import Daemon, make_settings, stack_settings, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


def ops_url(d: Daemon) -> str:
    def read() -> str | None:
        try:
            return json.loads(d.status_path.read_text())["info"].get("ops")
        except (OSError, ValueError, KeyError):
            return None

    return str(wait_for(read, 10, what=f"{d.name} ops address"))


def scrape(url: str) -> dict[str, float]:
    """Every sample as ``name{label=value,...}`` -> value."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def test_every_daemon_serves_health_readiness_and_metrics(clean, tmp_path: Path, daemons) -> None:
    # Arrange
    settings = stack_settings(
        clean,
        tmp_path / "home",
        rate=20,
    )
    procs = {n: daemons(n, settings) for n in ("publisher", "processor", "matching", "auth", "gateway")}

    # Act / Assert: liveness and readiness, with the dependency checks named
    for name, d in procs.items():
        url = ops_url(d)
        assert url.startswith("http://127.0.0.1:")
        health = httpx.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["daemon"] == name
        ready = httpx.get(f"{url}/readyz", timeout=5).json()
        deps = {"publisher": {"nats"}, "auth": {"redis"}}.get(name, {"nats", "redis"})
        assert ready["ready"] is True and ready["checks"] == {"ready": True, **dict.fromkeys(deps, True)}, ready

    # Assert: the processor's tick counter moves between two scrapes
    proc_url = ops_url(procs["processor"])
    key = "stockctl_ticks_total{daemon=processor}"
    first = wait_for(lambda: scrape(proc_url).get(key), 10, what="ticks counted")
    wait_for(lambda: scrape(proc_url)[key] > first, 10, what="the tick counter to grow")
    samples = scrape(proc_url)
    assert samples["stockctl_ready{daemon=processor}"] == 1.0
    assert samples["stockctl_batch_seconds_count{}"] >= 1
    assert "stockctl_backlog{daemon=processor}" in samples
    assert samples["process_resident_memory_bytes{}"] > 0


def test_readiness_fails_while_redis_is_away_and_recovers(own_servers, tmp_path: Path, daemons) -> None:
    # Arrange
    settings = make_settings(own_servers, tmp_path / "home")
    url = ops_url(daemons("processor", settings))

    # Act: Redis goes away
    own_servers.redis.stop()

    # Assert: not ready, naming Redis; alive all the same
    def not_ready() -> dict | None:
        resp = httpx.get(f"{url}/readyz", timeout=5)
        return resp.json() if resp.status_code == 503 else None

    doc = wait_for(not_ready, 15, what="readiness to fail")
    assert doc["checks"]["redis"] is False and doc["checks"]["nats"] is True
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200

    # Act / Assert: Redis is back, and so is readiness
    own_servers.redis.start()
    wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 20, what="ready again")


def test_json_logs_carry_the_request_id_across_daemons_and_no_secret(clean, tmp_path: Path, daemons) -> None:
    # Arrange
    settings = stack_settings(
        clean,
        tmp_path / "home",
        log_format="json",
        log_level="INFO",
    )
    procs = {n: daemons(n, settings) for n in ("matching", "auth", "gateway")}
    base = settings.gateway_url

    # Act: register through the gateway, then an order the engine rejects, each with our id
    reg = httpx.post(
        f"{base}/auth/register",
        json={"email": "json@example.com", "password": PASSWORD},
        headers={"X-Request-ID": "reg-0001"},
        timeout=10,
    )
    token = reg.json()["access_token"]
    order = httpx.post(
        f"{base}/api/v1/orders",
        json={"market": "TATA_INR", "side": "buy", "qty": "1", "price": "100.001"},
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "order-0002"},
        timeout=10,
    )
    hostile = httpx.get(f"{base}/api/v1/prices", headers={"X-Request-ID": 'bad id {"injected": 1}'}, timeout=10)

    # Assert: the id comes back, and the daemons that did the work logged it
    assert reg.status_code == 201 and reg.headers["x-request-id"] == "reg-0001"
    assert order.status_code == 422 and order.headers["x-request-id"] == "order-0002", order.text
    assert hostile.headers["x-request-id"] != 'bad id {"injected": 1}' and len(hostile.headers["x-request-id"]) == 16

    def lines(name: str) -> list[dict]:
        return [json.loads(line) for line in procs[name].log().splitlines() if line.startswith("{")]

    auth_lines = wait_for(lambda: [x for x in lines("auth") if x.get("request_id") == "reg-0001"], 10)
    assert "registered" in auth_lines[0]["msg"] and auth_lines[0]["daemon"] == "auth"
    match_lines = wait_for(lambda: [x for x in lines("matching") if x.get("request_id") == "order-0002"], 10)
    assert "tick size" in match_lines[0]["msg"] and match_lines[0]["client_order_id"]

    # Assert: every line of every log is JSON, and neither password nor token is in any
    for name, d in procs.items():
        text = d.log()
        structured = [line for line in text.splitlines() if line.strip()]
        assert structured and all(line.startswith("{") for line in structured), (name, structured[:3])
        assert PASSWORD not in text and token not in text and token.split(".")[2] not in text


def test_gateway_metrics_time_each_route_and_order_acks(clean, tmp_path: Path, daemons) -> None:
    # Arrange
    settings = stack_settings(
        clean,
        tmp_path / "home",
    )
    gateway = {n: daemons(n, settings) for n in ("matching", "auth", "gateway")}["gateway"]
    base = settings.gateway_url
    token = httpx.post(
        f"{base}/auth/register", json={"email": "m@example.com", "password": PASSWORD}, timeout=10
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}

    # Act
    for _ in range(3):
        httpx.get(f"{base}/api/v1/prices/AAPL", headers=auth, timeout=10)
    placed = httpx.post(
        f"{base}/api/v1/orders",
        json={"market": "TATA_INR", "side": "buy", "qty": "1", "price": "90"},
        headers=auth,
        timeout=10,
    )

    # Assert: one series per route template (not per URL), and the ack latency observed
    assert placed.status_code == 201, placed.text
    samples = scrape(ops_url(gateway))
    price_route = [
        k for k in samples if k.startswith("stockctl_http_request_seconds_count{") and "/prices/{symbol}" in k
    ]
    assert price_route and sum(samples[k] for k in price_route) == 3, price_route
    assert not [k for k in samples if "AAPL" in k]
    assert samples["stockctl_order_ack_seconds_count{}"] >= 1


def listening_addresses(pid: int) -> set[str]:
    """Every TCP address ``pid`` listens on, from /proc (no psutil needed)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            if width == 8:
                ip = ".".join(str(int(hex_ip[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                ip = "::1" if hex_ip == "00000000000000000000000001000000" else hex_ip
            found.add(f"{ip}:{int(hex_port, 16)}")
    return found


def test_every_daemon_and_server_listens_on_loopback_only(clean, tmp_path: Path, daemons) -> None:
    # Arrange
    settings = stack_settings(clean, tmp_path / "home")
    procs = {n: daemons(n, settings) for n in ("publisher", "processor", "matching", "auth", "gateway", "alerts")}
    for d in procs.values():
        ops_url(d)  # the ops listener is up too

    # Act
    listening = {name: listening_addresses(d.proc.pid) for name, d in procs.items()}  # type: ignore[union-attr]
    servers = {s.name: listening_addresses(s.proc.pid) for s in (clean.nats, clean.redis)}  # type: ignore[union-attr]

    # Assert: something listens (ops everywhere; HTTP and WebSocket too), and only on 127.0.0.1
    assert all(listening.values()), listening
    assert len(listening["gateway"]) >= 3 and len(listening["auth"]) >= 2, listening
    everything = {a for addrs in (*listening.values(), *servers.values()) for a in addrs}
    assert everything and all(a.startswith("127.0.0.1:") for a in everything), everything
