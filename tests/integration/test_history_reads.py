"""Reads beyond Redis's window: REST (history, candles) and the CLI (history, candles, export),
with STOCKCTL_HISTORY_LIMIT and the candle limit small, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from stockctl.history import open_store
from stockctl.instance.registry import write_instance
from stockctl.marketdata.money import to_units
from stockctl.settings import Settings
from tests.support.pg import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.support.stack import Daemon, stack_settings, wait_for
from tests.support.streams import stream_ticks

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
TICKS = 240  # per symbol


def login(settings: Settings) -> str:
    resp = httpx.post(
        f"{settings.gateway_url}/auth/register", json={"email": "ada@example.com", "password": PASSWORD}, timeout=10
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["access_token"]


@pytest.fixture(params=["sqlite", "postgres"])
def filled(request: pytest.FixtureRequest, clean, tmp_path: Path, daemons: Callable[..., Daemon]) -> Settings:
    extra = {"history_url": request.getfixturevalue("pg_url")} if request.param == "postgres" else {}
    settings = stack_settings(
        clean,
        tmp_path / "home",
        rate=40,  # 240 ticks over ~6 s: more 1s candles than Redis keeps (3)
        publish_limit=TICKS,
        sma_fast=2,
        sma_slow=3,
        history_limit=5,  # Redis keeps 5 points and 3 candles per interval
        candle_limit=3,
        **extra,
    )
    for name in ("processor", "history", "publisher", "auth", "gateway"):
        daemons(name, settings)
    store = open_store(settings, read_only=True)
    wait_for(lambda: store.count() == 2 * TICKS, 40, what="every tick in the history store")
    store.close()
    return settings


def get(settings: Settings, path: str, tok: str, **params: object) -> httpx.Response:
    return httpx.get(f"{settings.gateway_url}{path}", params=params, headers={"Authorization": f"Bearer {tok}"})


def test_rest_reads_beyond_the_redis_window_page_by_page(filled: Settings) -> None:
    tok = login(filled)
    expected = sorted((t[2], t[1], t[3]) for t in stream_ticks(filled.nats_url) if t[0] == "AAPL")
    assert len(expected) == TICKS

    # The latest N, more than Redis holds: topped up from the store
    latest = get(filled, "/api/v1/history/AAPL", tok, limit=100).json()
    assert [p[2] for p in latest] == [e[1] for e in expected[-100:]]

    # A range from the beginning, page by page with the X-Next-After cursor
    seen, after = [], None
    while True:
        resp = get(
            filled, "/api/v1/history/AAPL", tok, limit=70, **{"from": "0"}, **({"after": after} if after else {})
        )
        assert resp.status_code == 200, resp.text
        seen += resp.json()
        after = resp.headers.get("x-next-after")
        if after is None:
            break
        assert after == f"{seen[-1][1]}:{seen[-1][2]}"
    assert [(p[1], p[2], to_units(p[0])) for p in seen] == expected

    # since and to bound it
    assert len(get(filled, "/api/v1/history/AAPL", tok, limit=10_000, since="1h").json()) == TICKS
    cut = expected[100][0]
    assert [
        p[2] for p in get(filled, "/api/v1/history/AAPL", tok, limit=10_000, to=str(cut), **{"from": "0"}).json()
    ] == [e[1] for e in expected[:100]]

    # Candles: more than Redis keeps, and 1h which Redis does not keep at all
    ones = get(filled, "/api/v1/candles/AAPL", tok, interval="1s", limit=10_000, since="1h").json()
    assert len(ones) > 3 and sum(c["count"] for c in ones) == TICKS
    assert [c["start"] for c in ones] == sorted({e[0] - e[0] % 10**9 for e in expected})
    page = get(filled, "/api/v1/candles/AAPL", tok, interval="1s", limit=2, since="1h")
    assert page.headers["x-next-after"] == str(ones[1]["start"])
    rest = get(filled, "/api/v1/candles/AAPL", tok, interval="1s", limit=10_000, after=page.headers["x-next-after"])
    assert [c["start"] for c in rest.json()] == [c["start"] for c in ones[2:]]
    hours = get(filled, "/api/v1/candles/AAPL", tok, interval="1h", limit=5).json()
    assert sum(c["count"] for c in hours) == TICKS

    # Bad input: 4xx JSON with the reason
    for params, status, needle in [
        ({"since": "2 hours"}, 400, "bad since"),
        ({"since": "1h", "from": "0"}, 400, "since and from both given"),
        ({"from": "tomorrow"}, 400, "bad from"),
        ({"from": "2000", "to": "1000"}, 400, "to is not after from"),
        ({"after": "12"}, 400, "TS:SEQ"),
        ({"limit": 0}, 422, "limit"),
    ]:
        resp = get(filled, "/api/v1/history/AAPL", tok, **params)
        assert resp.status_code == status and needle in resp.json()["detail"], (params, resp.text)
        assert set(resp.json()) == {"error", "detail"}
    bad = get(filled, "/api/v1/candles/AAPL", tok, interval="5m", since="1h")
    assert bad.status_code == 400 and "kept intervals: 1s, 1m, 1h" in bad.json()["detail"]


def cli(settings: Settings, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")},
        "STOCKCTL_HOME": str(settings.home),
        "XDG_CONFIG_HOME": str(settings.home.parent / "config"),
        "COLUMNS": "200",
    }
    if settings.history_url:
        env["STOCKCTL_HISTORY_URL"] = settings.history_url
    return subprocess.run(
        [sys.executable, "-m", "stockctl", *args], capture_output=True, text=True, env=env, input=input, timeout=60
    )


def test_cli_history_candles_and_export_beyond_the_redis_window(filled: Settings, tmp_path: Path) -> None:
    write_instance(filled)  # what the supervisor does: the CLI finds the gateway here
    assert cli(filled, "register", "ada@example.com", "--password-stdin", input=PASSWORD + "\n").returncode == 0
    expected = sorted((t[2], t[1], t[3], t[4]) for t in stream_ticks(filled.nats_url) if t[0] == "MSFT")

    out = cli(filled, "history", "MSFT", "--since", "2h", "--limit", "100000", "--json")
    assert out.returncode == 0, out.stderr
    assert [p["seq"] for p in json.loads(out.stdout)] == [e[1] for e in expected]
    first = cli(filled, "history", "MSFT", "--from", "0", "--limit", "30")
    assert "more: the same command with --after" in first.stdout
    cursor = first.stdout.split("--after ")[1].split()[0]
    page2 = json.loads(
        cli(filled, "history", "MSFT", "--from", "0", "--after", cursor, "--limit", "5", "--json").stdout
    )
    assert [p["seq"] for p in page2] == [e[1] for e in expected[30:35]]
    candles = json.loads(cli(filled, "candles", "MSFT", "-i", "1h", "--since", "2h", "--json").stdout)
    assert sum(c["count"] for c in candles) == TICKS

    bad = cli(filled, "history", "MSFT", "--since", "soon")
    assert bad.returncode == 2 and "bad since" in bad.stderr and "Traceback" not in bad.stderr

    # export: CSV on stdout, Parquet to a file, both exact
    exported = cli(filled, "export", "MSFT", "--from", "0", "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(int(r["ts_ns"]), int(r["seq"]), to_units(r["price"]), int(r["volume"])) for r in rows] == expected
    target = tmp_path / "msft.parquet"
    assert cli(filled, "export", "MSFT", "--since", "1d", "--format", "parquet", "-o", str(target)).returncode == 0
    table = pq.read_table(target)
    got = zip(table.column("seq").to_pylist(), table.column("price").to_pylist(), strict=True)
    assert [(seq, to_units(str(price))) for seq, price in got] == [(e[1], e[2]) for e in expected]
    assert table.column("ts").cast("int64").to_pylist() == [e[0] for e in expected]
    half = cli(filled, "export", "MSFT", "--from", str(expected[0][0]), "--to", str(expected[120][0]))
    assert len(list(csv.DictReader(io.StringIO(half.stdout)))) == 120
    for args, needle in [
        (("export", "NOPE", "--from", "0"), "no history of NOPE"),
        (("export", "MSFT", "--format", "parquet"), "-o FILE"),
        (("export", "MSFT", "--from", "x"), "bad from"),
    ]:
        res = cli(filled, *args)
        assert res.returncode != 0 and needle in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
