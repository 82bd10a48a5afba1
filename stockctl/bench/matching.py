"""``stockctl bench matching``: the pure matching engine, in process, on a seeded order stream.

The stream is made before anything is timed: about 60% limit orders near a drifting mid
(both sides, some crossing it, a few IOC / FOK / post-only), 20% market orders and 20%
cancels of orders that are live at that point, over several generously funded users and
every default market. To pick only live orders to cancel, the generator drives a reference
engine as it goes; the engine is deterministic, so the timed runs see exactly the same book.

Two timed runs on fresh engines: one applies the whole stream back to back (orders/s, no
per-order timer in the loop), one times every command with ``perf_counter_ns`` (p50 / p99
latency). Both must give the generator's event count, or the result is not reported.

The same run then times a second stream, the *extended mix*, reported separately (``extended``):
8% stop and stop-limit orders around the mid, 8% amends (new qty, and half the time a new price)
of live orders, 1% time commands, and among the limit orders 8% good-till-date (expiring a few
hundred to a few thousand commands later) and 8% icebergs; the rest as in the classic mix.

Which build of the engine runs (compiled by mypyc, or pure Python) is part of the result
(``engine``). With ``peers``, :mod:`stockctl.bench.peers` then times other matching engines beside
ours (and our other build) on a stream all of them support, after checking their fills are ours.
"""

from __future__ import annotations

import gc
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from stockctl.bench.kit import LiveOrders, ProgressFn, no_progress, percentile, price_text
from stockctl.errors import UsageError
from stockctl.exchange import engine_build, engine_build_note
from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import (
    DEFAULT_MARKETS,
    Amend,
    Cancel,
    Cancelled,
    Command,
    Fund,
    MarketSpec,
    Place,
    Time,
    Trade,
)

DEFAULT_ORDERS = 200_000
QUICK_ORDERS = 20_000
DEFAULT_SEED = 4
DEFAULT_USERS = 8
TARGET_ORDERS_PER_S = 500_000

LIMIT_SHARE = 0.60
MARKET_SHARE = 0.20
"""The rest (20%) are cancels of live orders."""


@dataclass
class MatchingBenchResult:
    """What ``bench matching`` measured: throughput, per-command latency, and what the stream did."""

    orders: int
    """Commands in the timed stream (places and cancels)."""
    seed: int
    users: int
    markets: list[str]
    seconds: float
    """Wall time of the best back-to-back run."""
    orders_per_s: float
    """Commands per wall-clock second (best run): the headline figure."""
    cpu_orders_per_s: float
    """Commands per second of this process's CPU time (best run): less disturbed by a busy machine."""
    p50_us: float
    p99_us: float
    max_us: float
    mean_us: float
    events: int
    trades: int
    mix: dict[str, int] = field(default_factory=dict)
    """How many commands of each kind the stream holds, and outcomes (accepted, rejected...)."""
    final_book_orders: int = 0
    extended: dict[str, Any] = field(default_factory=dict)
    """The extended mix (stops, amends, gtd, icebergs, time commands), timed in the same run."""
    gc_enabled: bool = True
    elapsed_s: float = 0.0
    engine: str = ""
    """Which build ran: "compiled (mypyc)" or "pure Python"."""
    engine_note: str = ""
    peers: dict[str, Any] = field(default_factory=dict)
    """With ``--peers``: :class:`stockctl.bench.peers.PeersResult`'s document."""

    @property
    def target_met(self) -> bool:
        return self.orders_per_s >= TARGET_ORDERS_PER_S

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["orders_per_s"] = round(self.orders_per_s, 1)
        doc["cpu_orders_per_s"] = round(self.cpu_orders_per_s, 1)
        doc["target_orders_per_s"] = TARGET_ORDERS_PER_S
        doc["target_met"] = self.target_met
        doc["machine"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        }
        return doc


@dataclass
class Stream:
    """A seeded command stream, its funding, and what the reference engine made of it."""

    funding: list[Command]
    commands: list[Command]
    mix: dict[str, int]
    events: int
    trades: int
    final_book_orders: int


def make_stream(
    orders: int,
    seed: int,
    users: int = DEFAULT_USERS,
    markets: tuple[MarketSpec, ...] = DEFAULT_MARKETS,
    progress: ProgressFn = no_progress,
    extended: bool = False,
) -> Stream:
    """The seeded command stream (and the funding that precedes it), checked on a reference engine.
    ``extended``: the mix with stops, amends, good-till-date, icebergs and time commands."""
    if orders < 1:
        raise UsageError("--orders must be at least 1")
    rng = random.Random(seed)
    ref = Exchange(markets)
    names = [f"u{i:02d}" for i in range(users)]
    assets = sorted({s.base for s in markets} | {s.quote for s in markets})
    funding: list[Command] = [
        Fund(u, f"fund-{u}", {a: "1000000000" if a == "INR" else "10000000" for a in assets}, 0) for u in names
    ]
    for cmd in funding:
        ref.apply(cmd)
    symbols = [s.symbol for s in markets]
    mids = dict.fromkeys(symbols, 2000)  # in ticks: 100.00 at a 0.05 tick
    live = LiveOrders()
    mix = {"limit": 0, "market": 0, "cancel": 0, "ioc": 0, "fok": 0, "post_only": 0}
    if extended:
        mix |= {"stop": 0, "stop_limit": 0, "amend": 0, "time": 0, "gtd": 0, "iceberg": 0}
    outcome = {"accepted": 0, "rejected": 0, "cancelled": 0}
    commands: list[Command] = []
    events = trades = 0
    for i in range(orders):
        if i and i % 50_000 == 0:
            progress(f"generating orders: {i:,}/{orders:,}")
        ts = 1_000_000 + i
        sym = rng.choice(symbols)
        spec = ref.market_spec(sym)
        if i % 64 == 0:
            mids[sym] = min(max(mids[sym] + rng.randint(-2, 2), 200), 20_000)
        u = rng.random()
        user = rng.choice(names)
        cmd: Command
        v = rng.random() if extended else 1.0
        if v < 0.08:
            side = "buy" if rng.random() < 0.5 else "sell"
            away = rng.randint(2, 12)
            stop = price_text(mids[sym] + away if side == "buy" else mids[sym] - away, spec.tick_size)
            kind = "stop_limit" if rng.random() < 0.5 else "stop"
            cap = mids[sym] + away + 4 if side == "buy" else mids[sym] - away - 2
            price = price_text(cap, spec.tick_size) if kind == "stop_limit" or side == "buy" else None
            cmd = Place(
                user,
                f"o{i}",
                sym,
                side,
                kind,
                str(rng.randint(1, 10)),
                ts,
                price=price,
                stop_price=stop,  # type: ignore[arg-type]
            )
            mix[kind] += 1
        elif v < 0.16 and live.ids:
            oid = live.ids[rng.randrange(len(live.ids))]
            owner, mkt = live.owner[oid]
            new_price = price_text(mids[mkt] + rng.randint(-8, 8), spec.tick_size) if rng.random() < 0.5 else None
            cmd = Amend(owner, f"a{i}", mkt, oid, ts, price=new_price, qty=str(rng.randint(1, 20)))
            mix["amend"] += 1
        elif v < 0.17:
            cmd = Time(ts)
            mix["time"] += 1
        elif u >= LIMIT_SHARE + MARKET_SHARE and live.ids:
            oid = live.ids[rng.randrange(len(live.ids))]
            owner, mkt = live.owner[oid]
            cmd = Cancel(owner, f"c{i}", mkt, oid, ts)
            mix["cancel"] += 1
        elif u >= LIMIT_SHARE and u < LIMIT_SHARE + MARKET_SHARE:
            side = "buy" if rng.random() < 0.5 else "sell"
            cmd = Place(user, f"o{i}", sym, side, "market", str(rng.randint(1, 10)), ts)
            mix["market"] += 1
        else:
            side = "buy" if rng.random() < 0.5 else "sell"
            offset = rng.randint(-3, 12)  # ticks away from the mid on the passive side; negative crosses
            ticks = mids[sym] - offset if side == "buy" else mids[sym] + offset
            price = price_text(ticks, spec.tick_size)
            r = rng.random()
            tif, post_only = "gtc", False
            expire_at = display = None
            qty = rng.randint(1, 20)
            if extended and r >= 0.84:  # the extended mix: 8% gtd, 8% icebergs of the limit orders
                if r < 0.92:
                    tif, expire_at = "gtd", ts + rng.randint(200, 5000)
                    mix["gtd"] += 1
                else:
                    display = str(rng.randint(1, qty))
                    mix["iceberg"] += 1
            elif r < 0.06:
                tif = "ioc"
                mix["ioc"] += 1
            elif r < 0.09:
                tif = "fok"
                mix["fok"] += 1
            elif r < 0.14:
                post_only = True
                mix["post_only"] += 1
            cmd = Place(
                user,
                f"o{i}",
                sym,
                side,
                "limit",
                str(qty),
                ts,
                price=price,
                tif=tif,  # type: ignore[arg-type]
                post_only=post_only,
                expire_at=expire_at,
                display_qty=display,
            )
            mix["limit"] += 1
        commands.append(cmd)
        out = ref.apply(cmd)
        events += len(out)
        for ev in out:
            live.observe(ev)
            kind = type(ev).__name__
            if kind == "Accepted":
                outcome["accepted"] += 1
            elif kind == "Rejected":
                outcome["rejected"] += 1
            elif isinstance(ev, Trade):
                trades += 1
            elif isinstance(ev, Cancelled):
                outcome["cancelled"] += 1
    problems = ref.audit()
    if problems:
        raise RuntimeError(f"the reference engine is inconsistent: {problems[:3]}")
    final = sum(b[2] for m in symbols for side in (ref.book(m, 10**9),) for b in side.bids + side.asks)
    return Stream(funding, commands, {**mix, **outcome}, events, trades, final)


def _fresh(stream: Stream) -> Exchange:
    ex = Exchange()
    for cmd in stream.funding:
        ex.apply(cmd)
    return ex


def run_throughput(stream: Stream) -> tuple[float, float, int]:
    """Wall and CPU seconds to apply the whole stream back to back, and the events it made."""
    ex = _fresh(stream)
    apply = ex.apply
    commands = stream.commands
    n = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for cmd in commands:
        n += len(apply(cmd))
    return time.perf_counter() - t0, time.process_time() - c0, n


def run_latency(stream: Stream) -> tuple[list[int], int]:
    """Nanoseconds of every apply(), and the events made."""
    ex = _fresh(stream)
    apply = ex.apply
    clock = time.perf_counter_ns
    lat: list[int] = []
    add = lat.append
    n = 0
    for cmd in stream.commands:
        t0 = clock()
        out = apply(cmd)
        add(clock() - t0)
        n += len(out)
    return lat, n


def _timed(stream: Stream, rounds: int, progress: ProgressFn) -> tuple[float, float, list[int]]:
    """Best wall and CPU seconds over ``rounds`` back-to-back runs, and sorted per-command ns."""
    best = best_cpu = float("inf")
    for r in range(max(1, rounds)):
        progress(f"throughput run {r + 1}/{rounds}")
        seconds, cpu, n = run_throughput(stream)
        if n != stream.events:
            raise RuntimeError(f"the engine made {n} events, the reference {stream.events}: not deterministic")
        best = min(best, seconds)
        best_cpu = min(best_cpu, cpu)
    progress("latency run")
    lat, n = run_latency(stream)
    if n != stream.events:
        raise RuntimeError(f"the engine made {n} events, the reference {stream.events}: not deterministic")
    lat.sort()
    return best, best_cpu, lat


def run_matching_bench(
    orders: int = DEFAULT_ORDERS,
    seed: int = DEFAULT_SEED,
    users: int = DEFAULT_USERS,
    rounds: int = 3,
    progress: ProgressFn | None = None,
    peers: bool = False,
) -> MatchingBenchResult:
    """Generate the stream, then time it: best of ``rounds`` back-to-back runs, one latency run;
    with ``peers``, then the peer comparison on a stream of ``orders`` commands."""
    progress = progress or no_progress
    if users < 1:
        raise UsageError("--users must be at least 1")
    t_start = time.monotonic()
    progress("generating the order stream")
    stream = make_stream(orders, seed, users, progress=progress)
    best, best_cpu, lat = _timed(stream, rounds, progress)
    progress("generating the extended stream (stops, amends, gtd, icebergs)")
    ext = make_stream(orders, seed, users, progress=progress, extended=True)
    ext_best, ext_cpu, ext_lat = _timed(ext, rounds, progress)
    us = 1000.0
    extended = {
        "orders": len(ext.commands),
        "seconds": round(ext_best, 4),
        "orders_per_s": round(len(ext.commands) / ext_best, 1) if ext_best > 0 else 0.0,
        "cpu_orders_per_s": round(len(ext.commands) / ext_cpu, 1) if ext_cpu > 0 else 0.0,
        "p50_us": round(percentile(ext_lat, 0.50) / us, 2),
        "p99_us": round(percentile(ext_lat, 0.99) / us, 2),
        "max_us": round(ext_lat[-1] / us, 2),
        "events": ext.events,
        "trades": ext.trades,
        "mix": ext.mix,
    }
    peer_doc: dict[str, Any] = {}
    if peers:
        from stockctl.bench.peers import run_peers

        peer_doc = run_peers(orders, seed, rounds, progress).to_doc()
    return MatchingBenchResult(
        orders=len(stream.commands),
        seed=seed,
        users=users,
        markets=[s.symbol for s in DEFAULT_MARKETS],
        seconds=round(best, 4),
        orders_per_s=len(stream.commands) / best if best > 0 else 0.0,
        cpu_orders_per_s=len(stream.commands) / best_cpu if best_cpu > 0 else 0.0,
        p50_us=round(percentile(lat, 0.50) / us, 2),
        p99_us=round(percentile(lat, 0.99) / us, 2),
        max_us=round(lat[-1] / us, 2),
        mean_us=round(sum(lat) / len(lat) / us, 2),
        events=stream.events,
        trades=stream.trades,
        mix=stream.mix,
        final_book_orders=stream.final_book_orders,
        extended=extended,
        gc_enabled=gc.isenabled(),
        elapsed_s=round(time.monotonic() - t_start, 1),
        engine=engine_build(),
        engine_note=engine_build_note(),
        peers=peer_doc,
    )


__all__ = [
    "DEFAULT_ORDERS",
    "DEFAULT_SEED",
    "QUICK_ORDERS",
    "TARGET_ORDERS_PER_S",
    "MatchingBenchResult",
    "Stream",
    "make_stream",
    "run_matching_bench",
]
