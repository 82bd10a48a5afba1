"""Table commands as CSV against a running exchange, and shell completion that asks it."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from stockctl.cli.exchange import FILL_FIELDS, MARKET_FIELDS, ORDER_FIELDS, TRADE_FIELDS
from stockctl.cli.tables import csv_cell
from tests.support.cli import PASSWORD, logged_in_stack
from tests.support.stack import REPO, Daemon, Servers, wait_for, wipe_exchange

pytestmark = pytest.mark.integration


def table(run: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> tuple[list[str], list[list[str]]]:
    """``stockctl ARGS --format csv``: its header row and its rows."""
    out = run(*args, "--format", "csv")
    assert out.returncode == 0, out.stderr
    header, *rows = list(csv.reader(io.StringIO(out.stdout)))
    return header, rows


def exact(text: str) -> bool:
    """A decimal string as the server writes it, not a float's rendering."""
    return str(Decimal(text)) == text and "e" not in text.lower()


@pytest.mark.timeout(300)  # a dozen CLI processes
def test_table_commands_print_exact_csv_and_completion_asks_the_instance(
    servers: Servers, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange: an exchange; ada (the CLI's login) rests a sell, bob takes 4 of it over REST
    wipe_exchange(servers)
    li = logged_in_stack(servers, tmp_path, daemons, "ada@example.com", seed=5)
    daemons("matching", li.settings)

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stockctl", *args],
            capture_output=True,
            text=True,
            env={**li.env, **(env or {})},
            cwd=REPO,
            timeout=60,
        )

    sell = json.loads(run("order", "sell", "TATA_INR", "10@100.5", "--json").stdout)
    base = li.settings.gateway_url
    bob = httpx.post(f"{base}/auth/register", json={"email": "bob@example.com", "password": PASSWORD}, timeout=10)
    headers = {"Authorization": f"Bearer {bob.json()['access_token']}"}
    buy = {"market": "TATA_INR", "side": "buy", "qty": "4", "price": "101", "type": "limit", "tif": "gtc"}
    assert httpx.post(f"{base}/api/v1/orders", json=buy, headers=headers, timeout=10).status_code < 300

    # Act / Assert: each table command's CSV is its JSON, field for field, decimals exact
    header, fills = table(run, "fills")
    assert header == list(FILL_FIELDS)
    as_json = json.loads(run("fills", "--json").stdout)
    assert fills == [[csv_cell(f.get(k)) for k in FILL_FIELDS] for f in as_json]
    assert [(r[2], r[3], r[4]) for r in fills] == [("sell", "4", "100.50")] and exact(fills[0][5])

    header, trades = table(run, "trades", "TATA_INR")
    assert header == list(TRADE_FIELDS)
    assert [(r[3], r[4], r[5]) for r in trades] == [("100.50", "4", "buy")]

    header, orders = table(run, "orders")
    assert header == list(ORDER_FIELDS)
    assert [(r[0], r[2], r[5], r[6], r[7]) for r in orders] == [(str(sell["order_id"]), "sell", "100.50", "10", "6")]

    header, balances = table(run, "balance")
    assert header == ["asset", "available", "reserved"]
    assert ["TATA", "990", "6"] in balances and all(exact(a) and exact(r) for _, a, r in balances)

    header, markets = table(run, "markets")
    assert header == list(MARKET_FIELDS)
    assert {r[0]: r[3] for r in markets} == {"TATA_INR": "0.05", "JIO_INR": "0.05"}

    def some_history() -> list[list[str]] | None:
        return table(run, "history", "AAPL", "--limit", "3")[1] or None

    points = wait_for(some_history, 20, what="AAPL history")
    assert 1 <= len(points) <= 3 and all(exact(p[3]) and p[1].isdigit() for p in points)
    header, _ = table(run, "candles", "AAPL", "-i", "1s")
    assert header == ["start", "start_ns", "open", "high", "low", "close", "volume", "count"]

    # Act / Assert: completion through the shell's mechanism asks the running instance (its
    # symbols, not the configured ZZZZ) for symbols, and its markets
    script = str(Path(sys.executable).parent / "stockctl")

    def complete(words: str) -> list[str]:
        env = {**li.env, "STOCKCTL_SYMBOLS": "ZZZZ", "_STOCKCTL_COMPLETE": "complete_bash"}
        env |= {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        out = subprocess.run([script], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    symbols = complete("stockctl price ")
    assert {"AAPL", "MSFT"} <= set(symbols) and "ZZZZ" not in symbols
    assert complete("stockctl book T") == ["TATA_INR"]
    unreachable = {**li.env, "STOCKCTL_GATEWAY_URL": "http://127.0.0.1:9"}
    li.env, saved = unreachable, li.env
    try:
        assert complete("stockctl price ") == ["ZZZZ"]  # no answer: the configured list, silently
    finally:
        li.env = saved
