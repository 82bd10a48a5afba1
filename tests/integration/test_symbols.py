"""Real ticker symbols end to end: BRK.B and BTC/USDT from the publisher through JetStream
(``md.tick.<P>.BRK%2EB``), the processor and Redis, to the gateway's REST paths and WebSocket
channels, and to the CLI. Real servers and daemon processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import nats
import pytest
import redis
import websockets

from stockctl.instance.registry import write_instance
from stockctl.wire import names
from stockctl.wire.marketdata import tick_decoder
from tests.support.stack import stack_settings, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
SYMBOLS = ["BRK.B", "BTC/USDT", "BF-B"]


def test_real_symbols_flow_publisher_processor_gateway_websocket_cli(clean, daemons, tmp_path: Path) -> None:
    settings = stack_settings(clean, tmp_path / "home", symbols=SYMBOLS, rate=20, seed=3)
    for name in ("processor", "publisher", "auth", "gateway"):
        daemons(name, settings)
    write_instance(settings)  # what the supervisor does: the CLI finds the gateway here
    base = settings.gateway_url
    tok = httpx.post(f"{base}/auth/register", json={"email": "ada@example.com", "password": PASSWORD}, timeout=10)
    assert tok.status_code == 201, tok.text
    auth = {"Authorization": f"Bearer {tok.json()['access_token']}"}

    # Assert: the subjects and keys carry the encoded token, and decode back
    r = redis.Redis.from_url(clean.redis_url)
    wait_for(lambda: all(r.llen(names.history_key(s)) >= 3 for s in SYMBOLS), 20, what="history of every symbol")
    assert {s.decode() for s in r.smembers(names.SYMBOLS_KEY)} == set(SYMBOLS)
    assert r.exists("md:hist:{BTC%2FUSDT}") and r.exists("md:quote:{BRK%2EB}")

    async def stored_tick() -> tuple[str, str]:
        nc = await nats.connect(clean.nats_url)
        try:
            msg = await nc.jetstream().get_last_msg(
                names.TICK_STREAM, f"md.tick.{names.partition_of('BRK.B', 8)}.BRK%2EB"
            )
            return msg.subject, tick_decoder.decode(msg.data).symbol
        finally:
            await nc.close()

    assert asyncio.run(stored_tick()) == (f"md.tick.{names.partition_of('BRK.B', 8)}.BRK%2EB", "BRK.B")

    # REST: a / in a path is sent as %2F; a . needs nothing
    quote = httpx.get(f"{base}/api/v1/prices/BTC%2FUSDT", headers=auth, timeout=10)
    assert quote.status_code == 200, quote.text
    assert quote.json()["symbol"] == "BTC/USDT"
    hist = httpx.get(f"{base}/api/v1/history/brk.b", params={"limit": 2}, headers=auth, timeout=10)
    assert hist.status_code == 200 and len(hist.json()) == 2
    alias = httpx.get(f"{base}/price/history/BTC%2FUSDT/2", headers=auth, timeout=10)
    assert alias.status_code == 200 and len(alias.json()["data"]) == 2  # seed 002's envelope
    assert {q["symbol"] for q in httpx.get(f"{base}/api/v1/prices", headers=auth, timeout=10).json()} == set(SYMBOLS)
    bad = httpx.get(f"{base}/api/v1/prices/BRK..B", headers=auth, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "usageerror" and "separator" in bad.json()["detail"]
    look_alike = httpx.get(f"{base}/api/v1/prices/%D0%90APL", headers=auth, timeout=10)  # Cyrillic А
    assert look_alike.status_code == 400 and "U+0410" in look_alike.json()["detail"]

    # WebSocket: channels name the symbol as spelled
    async def live() -> tuple[dict, dict]:
        async with websockets.connect(settings.ws_url, additional_headers=auth) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channels": ["quotes:BTC/USDT", "candles:BRK.B:1s"], "id": 1}))
            got: dict[str, dict] = {}
            while "quote" not in got or "candle" not in got:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["type"] in ("quote", "candle"):
                    got[msg["type"]] = msg
            return got["quote"], got["candle"]

    q, c = asyncio.run(live())
    assert q["channel"] == "quotes:BTC/USDT" and q["data"]["symbol"] == "BTC/USDT"
    assert c["channel"] == "candles:BRK.B:1s" and c["data"]["symbol"] == "BRK.B"

    # CLI: through the gateway, like any client
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STOCKCTL_")},
        "STOCKCTL_HOME": str(settings.home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "COLUMNS": "200",
    }

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stockctl", *args], capture_output=True, text=True, env=env, input=stdin, timeout=60
        )

    login = cli("login", "ada@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    assert login.returncode == 0, login.stderr
    price = cli("price", "btc/usdt", "--json")
    assert price.returncode == 0, price.stderr
    assert json.loads(price.stdout)["symbol"] == "BTC/USDT"
    history = cli("history", "BRK.B", "--limit", "3", "--json")
    assert history.returncode == 0 and len(json.loads(history.stdout)) == 3
    refused = cli("price", "BTC*USDT")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "wildcard" in refused.stderr and "Traceback" not in refused.stderr
