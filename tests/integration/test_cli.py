"""The CLI as a user runs it: a subprocess, a temp STOCKCTL_HOME, embedded servers on free ports."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockctl.client.api import IDEMPOTENT_TIMEOUT_S
from stockctl.instance.infra import free_port
from stockctl.settings import DAEMONS
from tests.support.cli import Cli, cli_instance, pid_alive
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

SEED = {"AAPL", "GOOGL", "AMZN", "MSFT", "TSLA"}


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    yield from cli_instance(tmp_path / "home")


def test_up_prices_status_down_leaves_nothing_behind(cli: Cli) -> None:
    # Act: up, with everything (market makers included)
    up = cli.run("up", "--liquidity", check=True)
    assert "running" in up.stdout
    cli.register()

    # Assert: prices arrive for every seed symbol
    def priced() -> list[dict]:
        rows = cli.json("prices")
        return rows if {r["symbol"] for r in rows} >= SEED else []

    rows = wait_for(priced, 30, what="prices for 5 symbols")
    assert {r["symbol"] for r in rows} >= SEED
    assert all(r["price"] and r["ts"] for r in rows)

    status = cli.json("status")
    assert [s["name"] for s in status] == [
        "nats",
        "redis",
        "publisher",
        "processor",
        "matching",
        "auth",
        "gateway",
        "alerts",
        "liquidity",
        "history",
    ]
    assert all(s["state"] == "running" and s["pid"] for s in status)
    pids = [s["pid"] for s in status]

    # Assert: every daemon answers its readiness probe, which status shows
    def all_ready() -> list[dict]:
        rows = [s for s in cli.json("status") if s["name"] not in ("nats", "redis")]
        return rows if all(s.get("health") == "ready" for s in rows) else []

    assert all(s["ops"].startswith("http://127.0.0.1:") for s in wait_for(all_ready, 15, what="daemons ready"))

    hist = wait_for(lambda: [h for h in cli.json("history", "AAPL", "--limit", "3") if h] or None, 10)
    assert 1 <= len(hist) <= 3 and all("price" in h and "ts" in h for h in hist)
    assert cli.json("price", "aapl")["symbol"] == "AAPL"
    assert isinstance(cli.json("candles", "AAPL", "--interval", "1s", "--limit", "5"), list)

    doctor = {c["name"]: c for c in cli.json("doctor")}
    assert doctor["instance"]["status"] == "ok" and doctor["nats"]["status"] == "ok"
    assert doctor["clock"]["status"] == "ok"
    assert doctor["readiness"]["status"] == "ok" and "answer /readyz" in doctor["readiness"]["detail"], doctor

    # Act: a second up does not start a second copy
    again = cli.run("up")
    assert again.returncode == 0 and "already running" in again.stderr
    assert [s["pid"] for s in cli.json("status")] == pids

    # Act: down
    down = cli.run("down", check=True)
    assert "stopped" in down.stdout

    # Assert: no process left, and commands say the instance is down
    assert not [p for p in pids if pid_alive(p)]
    gone = cli.run("status")
    assert gone.returncode == 3 and "not running" in gone.stderr
    again = cli.run("down")
    assert again.returncode == 0 and "not running" in again.stdout


def test_supervisor_restarts_a_crashed_daemon(cli: Cli) -> None:
    cli.run("up", check=True)
    before = {s["name"]: s for s in cli.json("status")}

    os.kill(before["processor"]["pid"], 9)

    def restarted() -> dict | None:
        now = {s["name"]: s for s in cli.json("status")}["processor"]
        return now if now["state"] == "running" and now["restarts"] == 1 else None

    after = wait_for(restarted, 30, what="processor restarted")
    assert after["pid"] != before["processor"]["pid"]
    assert after["last_exit"] == -9


def test_port_in_use_is_one_line_naming_port_and_setting(cli: Cli) -> None:
    port = int(cli.env["STOCKCTL_REDIS_PORT"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()

        result = cli.run("up")

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "--redis-port" in lines[0] and "STOCKCTL_REDIS_PORT" in lines[0]
    assert "Traceback" not in result.stderr


def test_read_commands_when_down_fail_with_one_clear_line(cli: Cli) -> None:
    for args in (["prices"], ["price", "AAPL"], ["history", "AAPL"], ["watch", "AAPL"]):
        result = cli.run(*args)
        assert result.returncode == 3, args
        assert result.stderr.count("\n") == 1 and "stockctl up" in result.stderr, result.stderr


def test_bad_input_is_rejected_without_traceback(cli: Cli) -> None:
    cli.up()
    wait_for(lambda: {r["symbol"] for r in cli.json("prices")} >= SEED, 30)

    cases = {
        ("price", "NOPE"): "unknown symbol NOPE",
        ("price", "A.B>"): "bad symbol",
        ("history", "AAPL", "--limit", "0"): "limit",
        ("candles", "AAPL", "--interval", "7m"): "no 7m candles",
        ("logs", "nosuch"): "unknown component",
    }
    for args, needle in cases.items():
        result = cli.run(*args)
        assert result.returncode != 0, args
        assert needle in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr

    bad_env = dict(cli.env, STOCKCTL_RATE="NaN")
    proc = subprocess.run(
        [sys.executable, "-m", "stockctl", "prices"], capture_output=True, text=True, env=bad_env, timeout=30
    )
    assert proc.returncode == 2 and "rate" in proc.stderr and "Traceback" not in proc.stderr


def test_watch_streams_live_quotes_as_json_lines(cli: Cli) -> None:
    cli.up()
    wait_for(lambda: {r["symbol"] for r in cli.json("prices")} >= SEED, 30)

    result = cli.run("watch", "AAPL", "MSFT", "--json", "--count", "6", timeout=60)

    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 6
    assert {d["symbol"] for d in docs} == {"AAPL", "MSFT"}
    seqs = [d["seq"] for d in docs if d["symbol"] == "AAPL" and d["type"] == "quote"]
    assert seqs == sorted(seqs)


def test_watch_json_into_a_pipe_that_closes_ends_quietly(cli: Cli) -> None:
    # `stockctl watch AAPL --json | head -1`: the reader leaves; no traceback, no hang.
    cli.up()
    wait_for(lambda: {r["symbol"] for r in cli.json("prices")} >= SEED, 30)
    watch = subprocess.Popen(
        [sys.executable, "-m", "stockctl", "watch", "AAPL", "--json"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert watch.stdout is not None and watch.stderr is not None
    first = watch.stdout.readline()
    assert json.loads(first)["symbol"] == "AAPL"
    watch.stdout.close()  # what `head -1` does after its line

    watch.wait(timeout=30)
    err = watch.stderr.read().decode()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert watch.returncode == 0, err


def test_logs_show_the_component_log(cli: Cli) -> None:
    cli.run("up", check=True)

    result = cli.run("logs", "processor", "-n", "20", check=True)

    assert "processor: starting" in result.stdout


def test_up_attach_stops_everything_on_ctrl_c(cli: Cli) -> None:
    # Arrange: the supervisor in the foreground, as `stockctl up --attach` in a terminal.
    proc = subprocess.Popen(
        [sys.executable, "-m", "stockctl", "up", "--attach"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def all_running() -> list[dict] | None:
            rows = json.loads(cli.run("status", "--json").stdout or "[]")
            everything = {"nats", "redis", *DAEMONS} - {"liquidity", "feeds"}  # no market makers, no --feed
            names_running = {r["name"] for r in rows if r["state"] == "running"}
            return rows if names_running == everything == {r["name"] for r in rows} else None

        rows = wait_for(all_running, 60, what="attached instance running")
        pids = [r["pid"] for r in rows]

        # Act: Ctrl-C
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()

    # Assert: clean exit, every child gone, the instance is down.
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert not [p for p in pids if pid_alive(p)]
    assert cli.run("status").returncode == 3


def test_up_only_starts_a_subset_against_given_servers(clean, cli: Cli) -> None:
    up = cli.run("up", "--only", "processor", "--nats-url", clean.nats_url, "--redis-url", clean.redis_url, check=True)

    rows = cli.json("status")

    assert [r["name"] for r in rows] == ["processor"], up.stdout
    assert rows[0]["state"] == "running"


def test_logged_out_watch_is_one_clear_line(cli: Cli) -> None:
    cli.up()
    assert cli.json("whoami")["email"] == "ada@example.com"

    cli.run("logout", check=True)
    result = cli.run("watch", "AAPL")

    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "stockctl login" in result.stderr, result.stderr


def test_doctor_names_a_busy_port_and_fails(cli: Cli) -> None:
    port = int(cli.env["STOCKCTL_NATS_PORT"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()

        result = cli.run("doctor", "--json")

    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.returncode == 1
    assert checks["ports"]["status"] == "fail" and str(port) in checks["ports"]["detail"]
    assert checks["instance"]["status"] == "warn"


@pytest.mark.timeout(360)  # some thirty CLI processes, each a Python start-up (120 s was not enough on CI)
def test_two_users_trade_through_the_trading_commands(cli: Cli) -> None:
    # Arrange: a quiet exchange; ada and bob each logged in (their own config dirs).
    cli.up()
    bob = Cli(cli.home)
    bob.env = {**cli.env, "XDG_CONFIG_HOME": str(cli.home.parent / "config-bob")}
    bob.register("bob@example.com")

    # Act: ada rests a sell; bob takes part of it
    sell = cli.json("order", "sell", "TATA_INR", "10@100.5")
    buy = bob.json("order", "buy", "TATA_INR", "4@101")

    # Assert: the answers come from the engine's events
    assert sell["status"] == "open" and isinstance(sell["order_id"], int), sell
    assert buy["status"] == "filled" and [(f["qty"], f["price"]) for f in buy["filled"]] == [("4", "100.50")], buy
    opens = cli.json("orders")
    assert [(o["order_id"], o["market"], o["side"], o["price"], o["qty"], o["remaining"]) for o in opens] == [
        (sell["order_id"], "TATA_INR", "sell", "100.50", "10", "6")
    ]
    ada_fills, bob_fills = cli.json("fills"), bob.json("fills")
    assert [(f["side"], f["qty"], f["price"], f["order_id"]) for f in ada_fills] == [
        ("sell", "4", "100.50", sell["order_id"])
    ]
    assert [(f["side"], f["liquidity"]) for f in bob_fills] == [("buy", "taker")] and bob_fills[0]["fee"]
    bob_balance = bob.json("balance")
    assert bob_balance["TATA"] == {"available": "1004", "reserved": "0"}, bob_balance
    assert cli.json("balance")["TATA"]["reserved"] == "6"
    book = cli.json("book", "TATA_INR")
    assert [(p, q) for p, q, *_ in book["asks"]] == [("100.50", "6")] and book["bids"] == []
    trades = bob.json("trades", "TATA_INR")
    assert [(t["price"], t["qty"], t["taker_side"]) for t in trades] == [("100.50", "4", "buy")]
    assert "ada@example.com" not in json.dumps(trades)

    # Act / Assert: time in force and post-only, each ended by the engine with its reason
    def ended_because(doc: dict) -> str:
        return next(e["reason"] for e in doc["events"] if e["event"] == "cancelled")

    assert ended_because(bob.json("order", "buy", "JIO_INR", "3@250", "--ioc")) == "ioc"
    assert ended_because(bob.json("order", "buy", "TATA_INR", "100@100.5", "--fok")) == "fok"
    assert ended_because(bob.json("order", "buy", "TATA_INR", "1@100.5", "--post-only")) == "post_only"

    # Act / Assert: bob cannot cancel ada's order; ada can
    theirs = bob.run("cancel", str(sell["order_id"]))
    assert theirs.returncode != 0 and theirs.stderr.count("\n") == 1 and "Traceback" not in theirs.stderr
    cancelled = cli.json("cancel", str(sell["order_id"]))
    assert any(e["event"] == "cancelled" for e in cancelled["events"]), cancelled
    assert cli.json("orders") == []
    history = cli.json("orders", "--all")
    assert {e["event"] for e in history["history"]} >= {"accepted", "cancelled"}
    assert cli.json("balance")["TATA"] == {"available": "996", "reserved": "0"}

    # Assert: the exports for scripts agree with each other (the trade made TATA_INR a ticker)
    def exported() -> list[dict[str, str]] | None:
        rows = list(csv.DictReader(io.StringIO(cli.run("prices", "--format", "csv", check=True).stdout)))
        return rows if "TATA_INR" in {r["symbol"] for r in rows} else None

    rows = wait_for(exported, 20, what="TATA_INR in the CSV export")
    as_json = json.loads(cli.run("prices", "--format", "json", check=True).stdout)
    assert {r["symbol"] for r in rows} == {q["symbol"] for q in as_json} >= SEED | {"TATA_INR"}
    assert next(r for r in rows if r["symbol"] == "TATA_INR")["price"] == "100.50"


@pytest.mark.timeout(360)  # some twenty-five CLI processes, each a Python start-up
def test_amend_stops_gtd_and_icebergs_through_the_cli(cli: Cli) -> None:
    # Arrange: a quiet exchange; ada and bob each logged in.
    cli.up()
    bob = Cli(cli.home)
    bob.env = {**cli.env, "XDG_CONFIG_HOME": str(cli.home.parent / "config-bob")}
    bob.register("bob@example.com")
    mkt = "JIO_INR"
    bob.json("order", "sell", mkt, "1@300")
    cli.json("order", "buy", mkt, "1@300")  # the last trade in JIO_INR is 300

    # Iceberg: the book shows 2 of 9; the owner sees all of it.
    ice = bob.json("order", "sell", mkt, "9@310", "--display-qty", "2")
    assert [(p, q) for p, q, *_ in cli.json("book", mkt)["asks"]] == [("310.00", "2")]
    (mine,) = bob.json("orders", "--market", mkt)
    assert (mine["qty"], mine["display_qty"]) == ("9", "2")

    # Amend: a decrease keeps priority; someone else's id is one line, non-zero, no traceback.
    kept = bob.json("amend", str(ice["order_id"]), "--qty", "8")
    assert (kept["priority"], kept["remaining"]) == ("kept", "8")
    theirs = cli.run("amend", str(ice["order_id"]), "--qty", "1")
    assert theirs.returncode != 0 and theirs.stderr.count("\n") == 1 and "Traceback" not in theirs.stderr
    nothing = cli.run("amend", str(ice["order_id"]))
    assert nothing.returncode != 0 and "nothing to amend" in nothing.stderr

    # Stops: refused if already met; pending until a trade reaches them.
    met = cli.run("order", "buy", mkt, "1@320", "--stop", "299")
    assert met.returncode != 0 and "already meets stop_price" in met.stderr and "Traceback" not in met.stderr
    stop = cli.json("order", "buy", mkt, "3@312", "--type", "stop", "--stop", "305")
    assert stop["status"] == "pending"
    limit_stop = cli.json("order", "sell", mkt, "1@280", "--stop-limit", "290")
    assert [o["status"] for o in cli.json("orders", "--market", mkt)] == ["pending", "pending"]
    bob.json("order", "sell", mkt, "1@305")
    cli.json("order", "buy", mkt, "1@305")  # trades at 305: the stop buy takes the iceberg at 310
    fills = wait_for(
        lambda: [f for f in cli.json("fills") if f["order_id"] == stop["order_id"]], what="the triggered stop's fills"
    )
    assert sum(int(f["qty"]) for f in fills) == 3 and {f["price"] for f in fills} == {"310.00"}
    assert [o["order_id"] for o in cli.json("orders", "--market", mkt)] == [limit_stop["order_id"]]

    # Good till date: gone by itself a couple of seconds later.
    gtd = cli.json("order", "buy", mkt, "1@250", "--gtd", "+2s")
    assert gtd["status"] == "open"
    wait_for(lambda: gtd["order_id"] not in [o["order_id"] for o in cli.json("orders")], timeout=15, what="gtd expiry")
    history = cli.json("orders", "--all")["history"]
    assert any(e.get("reason") == "expired" and e["order_id"] == gtd["order_id"] for e in history)
    bad = cli.run("order", "buy", mkt, "1@250", "--gtd", "soon")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "bad expiry" in bad.stderr


def test_a_comma_list_of_gateways_fails_over_past_one_that_is_down(cli: Cli) -> None:
    # Arrange: the instance's gateway, listed after one that refuses connections; a new user.
    cli.up()
    live = f"http://127.0.0.1:{cli.env['STOCKCTL_GATEWAY_PORT']}"
    dead = f"http://127.0.0.1:{free_port()}"
    cy = Cli(cli.home)
    cy.env = {
        **cli.env,
        "XDG_CONFIG_HOME": str(cli.home.parent / "config-cy"),
        "STOCKCTL_GATEWAY_URL": f"{dead},{live}/",
    }

    # Act: log in, trade, read, and watch, each starting at the dead gateway.
    cy.register("cy@example.com")
    placed = cy.json("order", "buy", "TATA_INR", "1@99")
    opens = cy.json("orders")
    watched = cy.run("watch", "AAPL", "--json", "--count", "2", timeout=60)

    # Assert: every call reached the live gateway, and the order was placed once.
    assert placed["status"] == "open", placed
    assert [o["order_id"] for o in opens] == [placed["order_id"]], opens
    assert watched.returncode == 0, watched.stderr
    assert [json.loads(line)["symbol"] for line in watched.stdout.splitlines()] == ["AAPL", "AAPL"]

    # ... and with every gateway down, one line that names them all, no traceback.
    cli.run("down", check=True, timeout=120)
    down = cy.run("orders")
    assert down.returncode != 0
    assert "Traceback" not in down.stderr and len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert dead in down.stderr and live in down.stderr, down.stderr


def test_an_order_moves_past_a_gateway_that_accepts_connections_and_never_answers(cli: Cli) -> None:
    # Arrange: a "gateway" that is frozen (a listening socket nobody serves: connections are
    # accepted by the kernel, requests never answered), listed before the live one.
    cli.up()
    live = f"http://127.0.0.1:{cli.env['STOCKCTL_GATEWAY_PORT']}"
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(64)
        cy = Cli(cli.home)
        cy.env = {
            **cli.env,
            "XDG_CONFIG_HOME": str(cli.home.parent / "config-cy"),
            "STOCKCTL_GATEWAY_URL": f"http://127.0.0.1:{frozen.getsockname()[1]},{live}",
            "STOCKCTL_AUTH_BASE_URL": live,  # logging in is not what this test is about
        }
        cy.register("cy@example.com")

        # Act: an order (the CLI gives it a client order id) starting at the frozen gateway
        started = time.monotonic()
        placed = cy.json("order", "buy", "TATA_INR", "1@99")
        took = time.monotonic() - started

    # Assert: it waited for the frozen one, then went to the live one, and is there once
    assert placed["status"] == "open", placed
    assert took >= IDEMPOTENT_TIMEOUT_S, f"answered in {took:.1f}s: not through the frozen gateway first"
    cy.env["STOCKCTL_GATEWAY_URL"] = live  # a read would wait out the frozen gateway too
    assert [o["order_id"] for o in cy.json("orders")] == [placed["order_id"]]
