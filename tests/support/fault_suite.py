"""One instance under steady load, and the checks that follow a fault: the fault suites' shared kit.

:func:`running_stack` runs ``stockctl up`` in its own home (the caller adds flags, such as the
NATS cluster's URLs), registers four traders, starts their :class:`Load` (paused: each test runs
it around its own fault) and a :class:`Watcher` on ``quotes:AAPL`` and ``orders``. After a
fault, :func:`recover` measures the recovery (an order acknowledged and a fresh quote
delivered, each attempted after the fault) and :func:`verify` checks everything the fault
suites promise: every acknowledged order has exactly one outcome and is once in the final
state, no fill is duplicated in events or views, balances equal an independent replay and are
conserved, and the processor's history holds every tick of ``MD_TICKS`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
from tests.support.cli import PASSWORD, Cli, cluster_cli
from tests.support.faults import MARKETS, Ack, Ledger, Load, Watcher, matching_query, poll, table
from tests.support.stack import Server, wait_for

SYMBOLS = ("AAPL", "MSFT")
USERS = [f"trader{i}@example.com" for i in range(4)]
WS_CHANNELS = ["quotes:AAPL", "orders"]
RECOVERY_LIMIT_S = 60.0  # how long to wait for a recovery at all

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


@contextlib.contextmanager
def running_stack(
    request: pytest.FixtureRequest,
    base: Path,
    title: str,
    up_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cluster: bool = False,
) -> Iterator[Stack]:
    """``stockctl up --no-liquidity *up_args`` (with ``--cluster`` if ``cluster``) under load; on
    the way out ``down``, the load's trace in ``base/load.json`` and the summary table (titled
    ``title``) in pytest's summary."""
    cli = cluster_cli(base / "home") if cluster else Cli(base / "home")
    up_args = ("--cluster", *up_args) if cluster else tuple(up_args)
    cli.env |= {
        "STOCKCTL_SYMBOLS": ",".join(SYMBOLS),
        "STOCKCTL_RATE": "10",
        "STOCKCTL_HISTORY_LIMIT": "10000",  # the processor's history holds every tick of the run
        "STOCKCTL_ACCESS_TOKEN_TTL_S": "3600",
        **(env or {}),
    }
    st: Stack | None = None
    try:
        cli.run("up", "--no-liquidity", *up_args, check=True, timeout=150)
        settings = Settings(home=cli.home)
        nats_url, _ = resolve_urls(settings)
        gateway = resolve_gateway_url(settings).split(",")[0]  # up --cluster records two
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
                report(request, base, title, st.rows)


def report(request: pytest.FixtureRequest, base: Path, title: str, rows: list[dict[str, Any]]) -> None:
    path = base / "summary.json"
    path.write_text(json.dumps(rows, indent=1))
    text = table(rows, COLUMNS)
    # Shown in pytest's terminal summary (tests/conftest.py), where no progress line can hide it.
    summaries = request.config.__dict__.setdefault("stockctl_summaries", [])
    summaries.append((title, f"{text}\n(also in {path})"))


def start_load(st: Stack) -> None:
    """Resume the load and wait until it flows (25 orders sent since)."""
    st.load.resume()
    began = time.time()
    wait_for(lambda: sum(a.last_sent >= began for a in st.load.snapshot()) >= 25, 30, what="load flowing")


def recover(
    st: Stack, label: str, t_fault: float, t_ref: float, extra: dict[str, Callable[[], float | None]] | None = None
) -> tuple[float, dict[str, float]]:
    """Seconds from ``t_fault`` until an order is acknowledged and a fresh quote delivered (and
    whatever ``extra`` probes), each attempted after ``t_ref``; fails the test (with a row) if not in time."""
    load, watcher = st.load, st.watcher
    probes: dict[str, Callable[[], float | None]] = {
        "order": lambda: (a := load.first_ack_after(t_ref)) and a.acked,
        "quote": lambda: watcher.first_quote_after(t_ref),
        **(extra or {}),
    }
    done: dict[str, float] = {}

    def recovered() -> bool:
        for name, probe in probes.items():
            if name not in done and (at := probe()):
                done[name] = at
        return len(done) == len(probes)

    if not poll(recovered, RECOVERY_LIMIT_S, interval=0.1):
        why = (
            f"no recovery from {label} within {RECOVERY_LIMIT_S}s: only {sorted(done)} of {sorted(probes)};"
            f" load errors {load.errors[-3:]}, WebSocket failure {watcher.failure!r}"
        )
        st.rows.append({"fault": label, "problems": [why]})
        pytest.fail(why)
    return max(done.values()) - t_fault, done


def pause_load_after(st: Stack, back: float) -> None:
    """Let 20 more orders go out after ``back`` (the recovery), then pause the load for the checks."""
    wait_for(lambda: sum(a.last_sent >= back for a in st.load.snapshot()) >= 20, 30, what="load after recovery")
    st.load.pause()


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


def _ticks_contiguous(ledger: Ledger) -> bool:
    for ticks in ledger.ticks.values():
        seqs = sorted(t.seq for t in ticks)
        if seqs and seqs != list(range(seqs[0], seqs[-1] + 1)):
            return False
    return True


def check_history(st: Stack, v: Verdict) -> None:
    """History equals the stream's ticks in seq order (after an outage the stream may hold a few
    out of order: unconfirmed ticks are resent after those nats-py buffered; the processor reorders)."""
    ledger = st.ledger
    # A tick a stream leader took and then lost (it stepped down first) is sent again by the
    # publisher once unanswered for 3 s, after newer ones: a hole that fills, so wait for it.
    poll(lambda: ledger.sync() is not None and _ticks_contiguous(ledger), 20, interval=0.5)
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


def login_probe(st: Stack) -> Callable[[], float | None]:
    base = resolve_gateway_url(st.settings).split(",")[0]

    def probe() -> float | None:
        try:
            resp = httpx.post(f"{base}/auth/login", json={"email": USERS[1], "password": PASSWORD}, timeout=5)
        except httpx.HTTPError:
            return None
        return time.time() if resp.status_code == 200 else None

    return probe


def check_and_record(
    st: Stack,
    label: str,
    recovery: float,
    t_fault: float,
    done: dict[str, float],
    logs_at: dict[Path, int],
    **extra: Any,
) -> tuple[Verdict, int]:
    """:func:`verify` plus no new traceback in any log; the row goes into the summary table before
    the caller asserts, so a failing fault is in the table too. Returns the verdict and the
    number of failed attempts in this fault's window, and starts the next window."""
    v = verify(st)
    for text in st.tracebacks_since(logs_at):
        v.problem(text)
    failed = sum(1 for t in st.load.failures if t >= st.window_start)
    st.rows.append(
        {
            "fault": label,
            "recovery_s": round(recovery, 2),
            "orders_checked": v.orders_checked,
            "new_orders": v.new_orders,
            "lost": v.lost,
            "duplicated": v.duplicated,
            "ticks_checked": v.ticks_checked,
            "failed": failed,
            **extra,
            "ticks_out_of_order_in": sorted(v.reordered),
            "recovery_detail": {k: round(t - t_fault, 2) for k, t in done.items()},
            "problems": v.problems,
        }
    )
    st.window_start = time.time()
    return v, failed


STUCK_S = 20.0
"""A recovery slower than this is stuck, not slow. Issue #12's targets (under 10 s for a server
node, under 5 s for a role) are reported in the tables, not asserted: timing is for benchmarks."""


def assert_survived(st: Stack, v: Verdict, t_fault: float, recovery: float, bound_s: float = STUCK_S) -> None:
    """What every server-node fault must leave: nothing lost or doubled, the load answered and
    going on, the WebSocket client back with order events, every daemon running."""
    watcher = st.watcher
    assert v.problems == [], "\n".join(v.problems)
    assert v.lost == 0 and v.duplicated == 0
    assert v.new_orders >= 40, f"only {v.new_orders} orders acknowledged around the fault"
    assert st.load.errors == [], st.load.errors
    assert watcher.failure is None, f"the WebSocket client gave up: {watcher.failure!r}"
    assert any(t >= t_fault for t in watcher.order_events), "no `orders` event reached the WebSocket client after it"
    assert st.load.unacked == [], f"submissions never answered: {st.load.unacked[:5]}"
    assert recovery <= bound_s, f"recovery took {recovery:.1f}s"
    assert all(c["state"] == "running" for c in st.state().values()), st.state()


SERVER_PAUSE_S = 15.0
"""How long a server node stays frozen (SIGSTOP) in the cluster faults."""


def fail_node(node: Server, action: str, pause_s: float = SERVER_PAUSE_S) -> threading.Timer | None:
    """``kill`` (SIGKILL: the caller starts it again) or ``pause`` (SIGSTOP, and SIGCONT on the
    returned timer after ``pause_s``: the caller joins it)."""
    assert node.proc is not None
    if action == "pause":
        return fail_pid(node.proc.pid, action, pause_s)
    node.kill()
    return None


def fail_pid(pid: int, action: str, pause_s: float = SERVER_PAUSE_S) -> threading.Timer | None:
    """The same for a process the test did not start (a supervisor's child): after ``kill`` its
    supervisor starts it again."""
    if action == "pause":
        os.kill(pid, signal.SIGSTOP)
        resume = threading.Timer(pause_s, os.kill, (pid, signal.SIGCONT))
        resume.start()
        return resume
    os.kill(pid, signal.SIGKILL)
    return None
