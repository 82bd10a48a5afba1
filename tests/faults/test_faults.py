"""Fault injection (issue #6): one instance under steady load while each part of it fails in turn.

``stockctl up`` (supervisor, embedded nats-server and valkey-server, own home and free
ports) runs once for the module. Four users trade through the gateway's REST API and one
of them watches ``quotes:AAPL`` and ``orders`` over the WebSocket, both with the product's
own clients (``stockctl.client``). Then, one test per fault: kill -9 of each daemon (the
supervisor restarts it), nats-server and valkey-server stopped (SIGTERM, as
``stockctl restart`` does) and restarted by the supervisor, and the matching daemon
paused (SIGSTOP) past the gateway's timeouts and resumed.

After each fault, with the load paused: every acknowledged order has exactly one outcome
in the event log and is exactly once in the final state (open, or ended by one fill or
cancel); no fill is duplicated; every asset sums to what was funded; the stored events,
balances, books and open orders equal an independent replay of ``EX_ORDERS``; the
processor's history holds every tick of ``MD_TICKS`` once; the WebSocket client gets data
again (after reconnecting and resubscribing when the gateway died); ``stockctl status``
counts the restart. A summary table (fault, recovery time, orders checked, lost,
duplicated) is printed at the end and written to ``summary.json`` in the module's tmp dir.

Run alone: ``pytest -m faults`` (about a minute on two cores).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from stockctl.client.api import GatewayClient
from stockctl.exchange.accounts import FEE_ACCOUNT
from stockctl.instance.registry import resolve_gateway_url, resolve_urls
from stockctl.instance.supervisor import read_state
from stockctl.settings import Settings
from tests.support.cli import PASSWORD, Cli, pid_alive
from tests.support.faults import MARKETS, Ack, Ledger, Load, Watcher, matching_query, poll, table
from tests.support.stack import wait_for

pytestmark = pytest.mark.faults

SYMBOLS = ("AAPL", "MSFT")
USERS = [f"trader{i}@example.com" for i in range(4)]
WS_CHANNELS = ["quotes:AAPL", "orders"]
PAUSE_S = 11.0  # SIGSTOP this long: past the gateway's 10 s wait for an outcome and its 3 s query timeout
RECOVERY_LIMIT_S = 60.0  # how long to wait for a recovery at all
RECOVERY_TARGET_S = 15.0  # what counts as recovered in time (a NATS restart took ~18 s before matching resubscribed)

COLUMNS = [
    ("fault", "fault"),
    ("recovery_s", "recovery s"),
    ("orders_checked", "orders checked"),
    ("new_orders", "new"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("ticks_checked", "ticks checked"),
    ("failed", "failed attempts"),
    ("restarts", "restarts"),
]


@dataclass(frozen=True)
class Fault:
    id: str
    label: str
    component: str
    action: str  # "kill" (SIGKILL), "term" (SIGTERM: stop; the supervisor restarts it), "pause" (SIGSTOP, SIGCONT)


FAULTS = [
    Fault("kill-publisher", "kill -9 publisher", "publisher", "kill"),
    Fault("kill-processor", "kill -9 processor", "processor", "kill"),
    Fault("kill-auth", "kill -9 auth", "auth", "kill"),
    Fault("kill-matching", "kill -9 matching", "matching", "kill"),
    Fault("kill-gateway", "kill -9 gateway", "gateway", "kill"),
    Fault("restart-nats", "stop+restart nats-server", "nats", "term"),
    Fault("restart-redis", "stop+restart valkey-server", "redis", "term"),
    Fault("pause-matching", f"SIGSTOP matching {PAUSE_S:.0f}s (recovery from SIGCONT)", "matching", "pause"),
]


@dataclass
class Stack:
    """The running instance, its load and what the checks have seen so far."""

    cli: Cli
    settings: Settings
    nats_url: str
    tokens: dict[str, str]
    load: Load
    watcher: Watcher
    ledger: Ledger
    rows: list[dict[str, Any]] = field(default_factory=list)
    window_start: float = 0.0  # wall clock where the current fault's window of orders begins

    def status(self) -> dict[str, dict[str, Any]]:
        """``stockctl status --json``, by component."""
        return {row["name"]: row for row in self.cli.json("status")}  # type: ignore[union-attr]

    def state(self) -> dict[str, dict[str, Any]]:
        """The supervisor's run/state.json (what status reads), cheap enough to poll."""
        return {c["name"]: c for c in (read_state(self.settings) or {}).get("components", [])}

    def client(self, user: str) -> GatewayClient:
        return GatewayClient(self.settings, token=self.tokens[user])

    def log_sizes(self) -> dict[Path, int]:
        return {p: p.stat().st_size for p in self.settings.log_dir.glob("*.log")}

    def tracebacks_since(self, sizes: dict[Path, int]) -> list[str]:
        """Components whose log got a traceback since ``sizes``: a fault must be handled, not crash through."""
        out = []
        for path in sorted(self.settings.log_dir.glob("*.log")):
            with path.open("rb") as fh:
                fh.seek(sizes.get(path, 0))
                text = fh.read().decode(errors="replace")
            if "Traceback" in text:
                last = text[text.rindex("Traceback") :].strip().splitlines()[-1]
                out.append(f"{path.stem} logged {text.count('Traceback')} tracebacks, the last: {last}")
        return out


def register(base: str, email: str) -> str:
    resp = httpx.post(f"{base}/auth/register", json={"email": email, "password": PASSWORD}, timeout=30)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["access_token"])


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("faults")
    cli = Cli(base / "home")
    cli.env |= {
        "STOCKCTL_SYMBOLS": ",".join(SYMBOLS),
        "STOCKCTL_RATE": "10",
        "STOCKCTL_HISTORY_LIMIT": "10000",  # the processor's history holds every tick of the run
        "STOCKCTL_ACCESS_TOKEN_TTL_S": "3600",
    }
    st: Stack | None = None
    try:
        cli.run("up", "--no-liquidity", check=True, timeout=150)
        settings = Settings(home=cli.home)
        nats_url, _ = resolve_urls(settings)
        gateway = resolve_gateway_url(settings)
        tokens = {u: register(gateway, u) for u in USERS}
        for u in USERS:  # funded on first use
            with GatewayClient(settings, token=tokens[u]) as gw:
                gw.balances()
        st = Stack(
            cli,
            settings,
            nats_url,
            tokens,
            Load(settings, tokens),
            Watcher(settings, tokens[USERS[0]], WS_CHANNELS),
            Ledger(nats_url),
        )
        st.watcher.start()
        wait_for(lambda: st.watcher.resubscribed_after(0) and st.watcher.quotes, 30, what="WebSocket data")
        st.load.start()
        st.load.pause()  # each test runs the load around its own fault
        st.window_start = time.time()
        yield st
    finally:
        if st is not None:
            st.load.stop()
            st.watcher.stop()
        cli.run("down", timeout=120)
        if st is not None:
            # Every acknowledgement and failed attempt, for a post-mortem beside the instance's logs.
            trace = {
                "acks": [dataclasses.asdict(a) for a in st.load.acks],
                "failures": st.load.failures,
                "unacked": st.load.unacked,
            }
            (base / "load.json").write_text(json.dumps(trace))
            if st.rows:
                report(request, base, st.rows)


def report(request: pytest.FixtureRequest, base: Path, rows: list[dict[str, Any]]) -> None:
    path = base / "summary.json"
    path.write_text(json.dumps(rows, indent=1))
    text = table(rows, COLUMNS)
    # Shown in pytest's terminal summary (tests/conftest.py), where no progress line can hide it.
    summaries = request.config.__dict__.setdefault("stockctl_summaries", [])
    summaries.append(("fault injection summary", f"{text}\n(also in {path})"))


# --- the checks ------------------------------------------------------------------------------


@dataclass
class Verdict:
    orders_checked: int = 0
    new_orders: int = 0
    lost: int = 0
    duplicated: int = 0
    ticks_checked: int = 0
    reordered: set[str] = field(default_factory=set)  # symbols whose ticks MD_TICKS holds out of seq order
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 40:
            self.problems.append(text)


def verify(st: Stack) -> Verdict:
    """Everything issue #6 asks of the state after a fault; the load must be paused."""
    v = Verdict()
    ledger = st.ledger
    ledger.settle()
    acks = st.load.snapshot()
    window = [a for a in acks if a.acked >= st.window_start]
    v.orders_checked, v.new_orders = len(acks), len(window)

    # Every acknowledged order has exactly one outcome in the event log: the one it was told.
    for a in acks:
        key = (a.user, a.coid)
        n = ledger.outcomes[key]
        if n == 0:
            v.lost += 1
            v.problem(f"acknowledged {a.outcome} order {key} has no outcome in EX_EVENTS")
        elif n > 1:
            v.duplicated += 1
            v.problem(f"order {key} has {n} outcomes in EX_EVENTS")
        elif a.outcome == "accepted" and ledger.accepted_id.get(key) != a.order_id:
            v.problem(f"order {key} was acknowledged as {a.order_id}, stored as {ledger.accepted_id.get(key)}")
        elif a.outcome == "rejected" and key in ledger.accepted_id:
            v.problem(f"order {key} was acknowledged as rejected but stored as accepted")
    for key, n in ledger.outcomes.items():
        if n > 1 and not any((a.user, a.coid) == key for a in acks):
            v.duplicated += 1
            v.problem(f"unacknowledged order {key} has {n} outcomes")

    # ... and is exactly once in the final state: open on the book, or ended by one fill or cancel.
    opens: dict[str, list[dict[str, Any]]] = {}
    for user in USERS:
        with st.client(user) as gw:
            opens[user] = gw.orders()
    open_ids = Counter(o["order_id"] for rows in opens.values() for o in rows)
    for a in acks:
        if a.order_id is None:
            continue
        n = open_ids[a.order_id] + ledger.terminal[a.order_id]
        if n == 0:
            v.lost += 1
            v.problem(f"accepted order {a.order_id} ({a.coid}) is neither open nor filled nor cancelled")
        elif n > 1:
            v.duplicated += 1
            v.problem(f"order {a.order_id} ({a.coid}) is in the final state {n} times")

    # No fill is duplicated.
    for trade_id, n in ledger.trade_ids.items():
        if n > 1:
            v.duplicated += 1
            v.problem(f"trade {trade_id} stored {n} times")

    # The stored events are exactly those of an independent replay of the command log.
    for text in ledger.event_mismatches():
        v.problem(f"event log differs from the replay: {text}")
    for market, stored in ledger.stored.items():
        seqs = [msgspec.json.decode(b)["seq"] for b in stored]
        if seqs != list(range(1, len(seqs) + 1)):
            v.problem(f"event seqs of {market} are not 1..{len(seqs)}")
    engine = ledger.engine
    for text in engine.audit():
        v.problem(f"replayed engine audit: {text}")

    # Live balances, books and open orders equal the replay's; every asset sums to what was funded.
    funded = sorted(ledger.funded)
    if set(funded) != set(USERS):
        v.problem(f"funded accounts {funded} are not the test's users")
    requests: list[tuple[str, dict[str, Any]]] = [("balances", {"user": u}) for u in [*funded, FEE_ACCOUNT]]
    requests += [("book", {"market": m, "depth": 500}) for m in MARKETS]
    replies = asyncio.run(matching_query(st.nats_url, requests))
    totals: Counter[str] = Counter()
    for (_, payload), live in zip(requests[: len(funded) + 1], replies, strict=False):
        user = payload["user"]
        want = {a: {"available": av, "reserved": rs} for a, (av, rs) in engine.balances(user).items()}
        if live != want:
            v.problem(f"balances of {user}: live {live} != replayed {want}")
        for asset, b in live.items():
            totals[asset] += Decimal(b["available"]) + Decimal(b["reserved"])
    funded_totals: Counter[str] = Counter()
    for amounts in ledger.funded.values():
        for asset, amount in amounts.items():
            funded_totals[asset] += Decimal(amount)
    for asset in set(totals) | set(funded_totals):
        if totals[asset] != funded_totals[asset]:
            v.problem(f"{asset} not conserved: accounts hold {totals[asset]}, {funded_totals[asset]} was funded")
    for market, live in zip(MARKETS, replies[len(funded) + 1 :], strict=True):
        view = msgspec.json.decode(msgspec.json.encode(engine.book(market, 500)))
        if (live["bids"], live["asks"], live["last"]) != (view["bids"], view["asks"], view["last_trade"]):
            v.problem(f"book of {market}: live {live} != replayed {view}")
    for user in USERS:
        want_open = msgspec.json.decode(msgspec.json.encode(engine.open_orders(user)))
        # REST adds what it derives (filled_qty, ms and RFC 3339 times, partially_filled for an
        # open order with fills): compare the engine's own fields.
        own = [k for k in (want_open[0] if want_open else {}) if k != "status"]
        live_open = [{k: o.get(k) for k in own} for o in opens[user]]
        want_open = [{k: o[k] for k in own} for o in want_open]
        if live_open != want_open or len(opens[user]) != len(want_open):
            v.problem(f"open orders of {user}: {len(opens[user])} live != {len(want_open)} replayed")

    # The gateway's history views (order history, fills) hold this window's orders and fills once.
    check_views(st, window, v)

    # The processor's history holds every tick JetStream holds, once, in order.
    check_history(st, v)
    return v


def check_views(st: Stack, window: list[Ack], v: Verdict) -> None:
    ledger = st.ledger
    t_ns = int(st.window_start * 1e9)
    trades_by_user: dict[str, set[int]] = {u: set() for u in USERS}
    for t in ledger.trades:
        if t.ts >= t_ns:
            trades_by_user[t.maker_user].add(t.trade_id)
            trades_by_user[t.taker_user].add(t.trade_id)
    for user in USERS:
        mine = [a for a in window if a.user == user]
        with st.client(user) as gw:

            def views(gw: GatewayClient = gw, mine: list[Ack] = mine, user: str = user) -> tuple[Counter, list] | None:
                hist = gw.orders(history=True, limit=1000)["history"]
                seen = Counter(h["client_order_id"] for h in hist if h["event"] in ("accepted", "rejected"))
                fills = gw.fills(limit=1000)
                complete = all(seen[a.coid] for a in mine) and trades_by_user[user] <= {f["trade_id"] for f in fills}
                return (seen, fills) if complete else None

            got = poll(views, 10, interval=0.2)
            if got is None:  # report what is missing
                hist = gw.orders(history=True, limit=1000)["history"]
                seen = Counter(h["client_order_id"] for h in hist if h["event"] in ("accepted", "rejected"))
                fills = gw.fills(limit=1000)
                missing = [a.coid for a in mine if not seen[a.coid]]
                missing_fills = trades_by_user[user] - {f["trade_id"] for f in fills}
                if missing:
                    v.problem(f"{user}: order history lacks {missing[:10]} ({len(missing)} of {len(mine)})")
                if missing_fills:
                    v.problem(f"{user}: fills lack trades {sorted(missing_fills)[:10]} ({len(missing_fills)})")
            else:
                seen, fills = got
            twice = [a.coid for a in mine if seen[a.coid] > 1]
            if twice:
                v.duplicated += len(twice)
                v.problem(f"{user}: order history holds {twice[:10]} more than once")
            fill_ids = Counter(f["trade_id"] for f in fills)
            doubled = [t for t, n in fill_ids.items() if n > 1]
            if doubled:
                v.duplicated += len(doubled)
                v.problem(f"{user}: fills hold trades {doubled[:10]} more than once")
            bal = gw.balances()
            want = {a: {"available": av, "reserved": rs} for a, (av, rs) in ledger.engine.balances(user).items()}
            if bal != want:
                v.problem(f"REST balances of {user} {bal} != replayed {want}")


def check_history(st: Stack, v: Verdict) -> None:
    """History equals the stream's ticks in seq order (after an outage the stream may hold a few
    out of order: unconfirmed ticks are resent after those nats-py buffered; the processor reorders)."""
    ledger = st.ledger
    with st.client(USERS[0]) as gw:
        for sym in [*SYMBOLS, *MARKETS]:
            ticks = ledger.ticks.get(sym, [])
            if not ticks:
                if sym in SYMBOLS:
                    v.problem(f"no ticks of {sym} in MD_TICKS")
                continue
            in_stream = [t.seq for t in ticks]
            if in_stream != sorted(in_stream):
                v.reordered.add(sym)
            ordered = sorted(ticks, key=lambda t: t.seq)
            seqs = [t.seq for t in ordered]
            if seqs != list(range(seqs[0], seqs[-1] + 1)):
                dups = sorted(s for s, n in Counter(seqs).items() if n > 1)
                gaps = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
                v.problem(f"MD_TICKS of {sym}: seqs {seqs[0]}..{seqs[-1]} missing {gaps[:10]}, doubled {dups[:10]}")
            last = seqs[-1]
            hist = poll(lambda sym=sym, last=last: (h := gw.history(sym, 10_000)) and h[-1].seq >= last and h, 30, 0.1)
            if not hist:
                v.problem(f"processor history of {sym} did not reach seq {last}")
                continue
            points = [(p.price, p.ts, p.seq) for p in hist if p.seq <= last]
            want = [(t.price, t.ts, t.seq) for t in ordered]
            v.ticks_checked += len(want)
            if points != want:
                got = [p[2] for p in points]
                gaps = sorted(set(seqs) - set(got))
                dups = sorted(s for s, n in Counter(got).items() if n > 1)
                i = next((i for i, (a, b) in enumerate(zip(points, want, strict=False)) if a != b), len(points))
                v.problem(
                    f"history of {sym} != MD_TICKS: missing {gaps[:10]}, duplicated {dups[:10]};"
                    f" first difference at #{i}: {points[i : i + 3]} vs {want[i : i + 3]}"
                )


# --- the faults ---------------------------------------------------------------------------------


def login_probe(st: Stack) -> Callable[[], float | None]:
    base = resolve_gateway_url(st.settings)

    def probe() -> float | None:
        try:
            resp = httpx.post(f"{base}/auth/login", json={"email": USERS[1], "password": PASSWORD}, timeout=5)
        except httpx.HTTPError:
            return None
        return time.time() if resp.status_code == 200 else None

    return probe


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault_recovers_with_no_acknowledged_order_lost_or_duplicated(stack: Stack, fault: Fault) -> None:
    st, load, watcher = stack, stack.load, stack.watcher

    # Arrange: the load runs, the component is up.
    load.resume()
    began = time.time()
    wait_for(lambda: sum(a.last_sent >= began for a in load.snapshot()) >= 25, 30, what="load flowing")
    before = st.status()[fault.component]
    assert before["state"] == "running" and before["pid"], before
    logs_at = st.log_sizes()
    pid = int(before["pid"])

    # Act
    t_fault = time.time()
    paused_health = None
    if fault.action == "pause":
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(2.0)
            # The process is still there, so the supervisor says "running"; its readiness
            # probe cannot answer, and status says so.
            paused_health = st.status()[fault.component].get("health")
            time.sleep(PAUSE_S - 2.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        t_fault = time.time()  # recovery is measured from the resume
    else:
        # SIGTERM is what `stockctl restart NAME` sends; either way the supervisor starts it again.
        os.kill(pid, signal.SIGKILL if fault.action == "kill" else signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), 30, interval=0.01, what=f"{fault.component} gone")
    t_ref = time.time()  # the component is gone (or resumed): what works from now on went through recovery

    # Recovery: an order acknowledged and a fresh quote (a tick published after the fault) delivered
    # over the WebSocket; after a gateway death also a reconnect and resubscribe, after auth a login.
    # Each counts only when its attempt started once the component was gone; the time is from the fault.
    probes: dict[str, Callable[[], float | None]] = {
        "order": lambda: (a := load.first_ack_after(t_ref)) and a.acked,
        "quote": lambda: watcher.first_quote_after(t_ref),
    }
    if fault.component == "gateway":
        probes["resubscribed"] = lambda: watcher.resubscribed_after(t_ref)
    if fault.component == "auth":
        probes["login"] = login_probe(st)
    done: dict[str, float] = {}

    def recovered() -> bool:
        for name, probe in probes.items():
            if name not in done and (at := probe()):
                done[name] = at
        return len(done) == len(probes)

    if not poll(recovered, RECOVERY_LIMIT_S, interval=0.1):
        why = (
            f"no recovery from {fault.label} within {RECOVERY_LIMIT_S}s: only {sorted(done)} of {sorted(probes)};"
            f" load errors {load.errors[-3:]}, WebSocket failure {watcher.failure!r}"
        )
        st.rows.append({"fault": fault.label, "problems": [why]})
        pytest.fail(why)
    recovery = max(done.values()) - t_fault
    if fault.action != "pause":
        wait_for(
            lambda: (c := st.state()[fault.component])["state"] == "running" and c["restarts"] > before["restarts"],
            RECOVERY_LIMIT_S,
            what=f"{fault.component} restarted",
        )
    back = max(done.values())
    wait_for(lambda: sum(a.last_sent >= back for a in load.snapshot()) >= 20, 30, what="load after recovery")
    load.pause()
    order_events_after = [t for t in watcher.order_events if t >= t_ref]

    # Assert (the row goes into the summary first, so a failing fault is in the table too)
    after = st.status()[fault.component]
    v = verify(st)
    for text in st.tracebacks_since(logs_at):
        v.problem(text)
    failed = sum(1 for t in load.failures if t >= st.window_start)
    st.rows.append(
        {
            "fault": fault.label,
            "recovery_s": round(recovery, 2),
            "orders_checked": v.orders_checked,
            "new_orders": v.new_orders,
            "lost": v.lost,
            "duplicated": v.duplicated,
            "ticks_checked": v.ticks_checked,
            "failed": failed,
            "restarts": after["restarts"],
            "ticks_out_of_order_in": sorted(v.reordered),
            "recovery_detail": {k: round(t - t_fault, 2) for k, t in done.items()},
            "problems": v.problems,
        }
    )
    st.window_start = time.time()

    assert v.problems == [], "\n".join(v.problems)
    assert v.lost == 0 and v.duplicated == 0
    assert v.new_orders >= 40, f"only {v.new_orders} orders acknowledged around the fault"
    assert load.errors == [], load.errors
    assert watcher.failure is None, f"the WebSocket client gave up: {watcher.failure!r}"
    assert watcher.is_alive()
    assert order_events_after, "no `orders` event reached the WebSocket client after the fault"
    assert load.unacked == [], f"submissions never answered: {load.unacked[:5]}"
    assert recovery <= RECOVERY_TARGET_S, f"recovery took {recovery:.1f}s ({done})"
    assert after["state"] == "running"
    if fault.action == "pause":
        assert after["pid"] == pid and after["restarts"] == before["restarts"], after
        assert failed > 0, "no request timed out: the pause did not outlast the gateway's timeouts"
        assert paused_health == "no answer", f"status showed {paused_health!r} for a frozen {fault.component}"
        assert after.get("health") == "ready", after
    else:
        assert after["restarts"] == before["restarts"] + 1, after
        assert after["pid"] != pid
        if fault.action == "kill":
            assert after["last_exit"] == -signal.SIGKILL, after
    if fault.component == "gateway":
        assert "resubscribed" in done
