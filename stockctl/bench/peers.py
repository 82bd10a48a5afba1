"""``stockctl bench matching --peers``: our engine beside other matching engines, on one seeded stream.

The peers, when importable (``pip install 'stockctl[peers]'``): **liquibook** (C++, through SWIG)
and **lightmatchingengine** (pure Python). The stream is what all three do alike: limit orders
(good till cancelled) in one market, near a drifting mid, some crossing it, and cancels of orders
live at that point. Buys and sells come from two different users, so our self-trade prevention
never acts (the peers have none); a market order is left out (lightmatchingengine rests a market
order's remainder at price 0).

Before anything is timed, each peer applies the stream once and its fills must be ours, fill for
fill: (maker order, taker order, price in ticks, lots), in order. A peer that differs is reported
as such and not timed. Then each engine applies the stream back to back, best of ``rounds``:

- ours: the ``Exchange`` as the matching daemon drives it (events built and formatted, balances
  settled), in the build this process runs, and the other build (pure Python or compiled) in a
  child process on the same seeded stream, when there is one;
- liquibook with a Python fill listener (the way its examples use it, so every fill reaches Python,
  as ours do); lightmatchingengine as it is.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from stockctl.bench.kit import LiveOrders, price_text
from stockctl.exchange import COMPILED, engine_build
from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import DEFAULT_MARKETS, Cancel, Command, Fund, Place, Trade

MARKET = DEFAULT_MARKETS[0]
PEERS = ("liquibook", "lightmatchingengine")
"""The peers, by their import names (and their PyPI names)."""
TARGET_VS_LIQUIBOOK = 1.5
"""Our orders/s as a multiple of liquibook's, on the same stream in the same run."""

Fill = tuple[int, int, int, int]
"""(maker order id, taker order id, price in ticks, lots)."""


@dataclass
class PeerStream:
    """Limit orders and cancels; ``ops`` the same as (kind, order id, is_buy, ticks, lots) for the peers."""

    funding: list[Command]
    commands: list[Command]
    ops: list[tuple[str, int, bool, int, int]]
    fills: list[Fill]


@dataclass
class EngineRun:
    name: str
    build: str
    importable: bool = True
    same_fills: bool | None = None
    orders_per_s: float = 0.0
    cpu_orders_per_s: float = 0.0
    note: str = ""


@dataclass
class PeersResult:
    orders: int
    seed: int
    runs: list[EngineRun] = field(default_factory=list)

    def rate(self, name: str) -> float:
        return next((r.cpu_orders_per_s for r in self.runs if r.name == name and r.cpu_orders_per_s), 0.0)

    @property
    def vs_liquibook(self) -> float | None:
        """Our compiled build's orders per CPU second over liquibook's (None: one of them did not run).
        CPU time, as the same run's wall clock on a shared machine depends on the others' load."""
        ours = next((r.cpu_orders_per_s for r in self.runs if r.name == "stockctl" and r.build == COMPILED), 0.0)
        lb = self.rate("liquibook")
        return ours / lb if ours and lb else None

    def to_doc(self) -> dict[str, Any]:
        ratio = self.vs_liquibook
        return {
            "orders": self.orders,
            "seed": self.seed,
            "market": MARKET.symbol,
            "runs": [asdict(r) for r in self.runs],
            "vs_liquibook": None if ratio is None else round(ratio, 3),
            "target_vs_liquibook": TARGET_VS_LIQUIBOOK,
            "target_met": None if ratio is None else ratio >= TARGET_VS_LIQUIBOOK,
        }


def _ticks(text: str) -> int:
    whole, _, frac = text.partition(".")
    tick_whole, _, tick_frac = MARKET.tick_size.partition(".")
    dp = len(tick_frac)
    return int(whole + frac.ljust(dp, "0")) // int(tick_whole + tick_frac)


def our_fills(events: list[Any]) -> list[Fill]:
    return [(e.maker_order_id, e.taker_order_id, _ticks(e.price), int(e.qty)) for e in events if isinstance(e, Trade)]


def make_peer_stream(orders: int, seed: int) -> PeerStream:
    """The seeded stream (80% limit orders, 20% cancels of live ones), checked on our engine."""
    rng = random.Random(seed)
    ref = Exchange([MARKET])
    funding: list[Command] = [
        Fund(u, f"fund-{u}", {MARKET.base: "100000000000", MARKET.quote: "100000000000"}, 0) for u in ("b", "s")
    ]
    for cmd in funding:
        ref.apply(cmd)
    live = LiveOrders()
    mid = 2000
    commands: list[Command] = []
    ops: list[tuple[str, int, bool, int, int]] = []
    fills: list[Fill] = []
    next_oid = 1
    for i in range(orders):
        ts = 1_000_000 + i
        if i % 64 == 0:
            mid = min(max(mid + rng.randint(-2, 2), 200), 20_000)
        cmd: Command
        if rng.random() < 0.2 and live.ids:
            oid = live.ids[rng.randrange(len(live.ids))]
            owner, _ = live.owner[oid]
            cmd = Cancel(owner, f"c{i}", MARKET.symbol, oid, ts)
            ops.append(("cancel", oid, owner == "b", 0, 0))
        else:
            is_buy = rng.random() < 0.5
            offset = rng.randint(-3, 12)
            ticks = mid - offset if is_buy else mid + offset
            lots = rng.randint(1, 20)
            user = "b" if is_buy else "s"
            side = "buy" if is_buy else "sell"
            cmd = Place(
                user, f"o{i}", MARKET.symbol, side, "limit", str(lots), ts, price=price_text(ticks, MARKET.tick_size)
            )
            ops.append(("add", next_oid, is_buy, ticks, lots))
            next_oid += 1
        commands.append(cmd)
        out = ref.apply(cmd)
        for ev in out:
            live.observe(ev)
            if type(ev).__name__ == "Rejected":
                raise RuntimeError(f"the peer stream was refused: {ev}")
        fills.extend(our_fills(out))
    return PeerStream(funding, commands, ops, fills)


# --- the peers ---------------------------------------------------------------------------------


def _liquibook(stream: PeerStream, record: bool) -> tuple[float, float, list[Fill]]:
    import liquibook as lb  # type: ignore[import-not-found,import-untyped]

    fills: list[Fill] = []
    ids: dict[int, int] = {}  # liquibook's order id -> ours

    class Listener(lb.OrderListener):  # type: ignore[misc]
        def on_fill(self, order: Any, matched: Any, qty: int, price: int) -> None:
            if record:
                fills.append((ids[matched.order_id_], ids[order.order_id_], price, qty))

        def on_accept(self, order: Any) -> None:
            pass

        def on_cancel(self, order: Any) -> None:
            pass

        def on_reject(self, order: Any, reason: str) -> None:
            raise RuntimeError(f"liquibook rejected an order: {reason}")

        def on_cancel_reject(self, order: Any, reason: str) -> None:
            raise RuntimeError(f"liquibook refused a cancel: {reason}")

        def on_replace(self, *args: Any) -> None:
            pass

        def on_replace_reject(self, *args: Any) -> None:
            pass

        def on_trigger_stop(self, *args: Any) -> None:
            pass

    book = lb.liquibook_book_OrderBook()
    listener = Listener()
    book.set_order_listener(listener)
    orders: dict[int, Any] = {}
    for kind, oid, is_buy, ticks, lots in stream.ops:
        if kind == "add":
            o = orders[oid] = lb.SimpleOrder(is_buy, ticks, lots)
            ids[o.order_id_] = oid
    plan = [(kind == "add", orders[oid]) for kind, oid, _, _, _ in stream.ops]
    add, cancel, none = book.add, book.cancel, lb.oc_no_conditions
    c0, t0 = time.process_time(), time.perf_counter()
    for is_add, o in plan:
        if is_add:
            add(o, none)
        else:
            cancel(o)
    return time.perf_counter() - t0, time.process_time() - c0, fills


def _lme_fills(stream: PeerStream) -> list[Fill]:
    """lightmatchingengine's fills: its trades are one per level for the taker, then one per maker
    (the side opposite the taker's); the makers' are the fills."""
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine

    lme = LightMatchingEngine()
    sym = MARKET.symbol
    fills: list[Fill] = []
    for kind, oid, is_buy, ticks, lots in stream.ops:
        if kind == "add":
            side = 1 if is_buy else 2
            order, trades = lme.add_order(sym, ticks, lots, side)
            if order.order_id != oid:
                raise RuntimeError(f"lightmatchingengine numbered order {oid} as {order.order_id}")
            fills.extend((t.order_id, oid, t.trade_price, t.trade_qty) for t in trades if t.trade_side != side)
        else:
            lme.cancel_order(oid, sym)
    return fills


def _lme_timed(stream: PeerStream) -> tuple[float, float]:
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine

    lme = LightMatchingEngine()
    sym = MARKET.symbol
    plan = [(kind == "add", oid, 1 if is_buy else 2, ticks, lots) for kind, oid, is_buy, ticks, lots in stream.ops]
    add, cancel = lme.add_order, lme.cancel_order
    c0, t0 = time.process_time(), time.perf_counter()
    for is_add, oid, side, ticks, lots in plan:
        if is_add:
            add(sym, ticks, lots, side)
        else:
            cancel(oid, sym)
    return time.perf_counter() - t0, time.process_time() - c0


def time_ours(stream: PeerStream) -> tuple[float, float]:
    ex = Exchange([MARKET])
    for cmd in stream.funding:
        ex.apply(cmd)
    apply = ex.apply
    c0, t0 = time.process_time(), time.perf_counter()
    for cmd in stream.commands:
        apply(cmd)
    return time.perf_counter() - t0, time.process_time() - c0


def _best(run: Callable[[], tuple[float, float]], rounds: int, n: int) -> tuple[float, float]:
    wall = cpu = float("inf")
    for _ in range(max(1, rounds)):
        w, c = run()
        wall, cpu = min(wall, w), min(cpu, c)
    return n / wall, n / cpu


def ours_in_child(orders: int, seed: int, rounds: int, build: str) -> EngineRun:
    """Our other build, timed in a child process (``STOCKCTL_ENGINE=pure`` when this one is compiled)."""
    code = (
        "import json,sys; from stockctl.bench.peers import ours_here;"
        f" print(json.dumps(ours_here({orders}, {seed}, {rounds})))"
    )
    env = {**os.environ, "STOCKCTL_ENGINE": "pure"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return EngineRun("stockctl", build, note=f"child failed: {proc.stderr.strip()[-200:]}")
    return EngineRun(**json.loads(proc.stdout.strip().splitlines()[-1]))


def ours_here(orders: int, seed: int, rounds: int) -> dict[str, Any]:
    stream = make_peer_stream(orders, seed)
    rate, cpu = _best(lambda: time_ours(stream), rounds, len(stream.commands))
    note = f"{len(stream.fills):,} fills (the reference)"
    return asdict(EngineRun("stockctl", engine_build(), True, True, round(rate, 1), round(cpu, 1), note))


def run_peers(orders: int, seed: int, rounds: int = 3, progress: Callable[[str], None] = lambda _: None) -> PeersResult:
    """Our engine (both builds where there are two) and each importable peer, on one stream."""
    progress("generating the peer stream (limit orders and cancels)")
    stream = make_peer_stream(orders, seed)
    n = len(stream.commands)
    result = PeersResult(n, seed)
    progress("timing stockctl")
    rate, cpu = _best(lambda: time_ours(stream), rounds, n)
    note = f"{len(stream.fills):,} fills (the reference)"
    result.runs.append(EngineRun("stockctl", engine_build(), True, True, round(rate, 1), round(cpu, 1), note))
    if engine_build() == COMPILED:
        progress("timing stockctl, pure Python, in a child process")
        result.runs.append(ours_in_child(orders, seed, rounds, "pure Python"))
    for name in PEERS:
        run = EngineRun(name, "C++ (SWIG)" if name == "liquibook" else "pure Python")
        result.runs.append(run)
        try:
            importlib.import_module(name)
        except ImportError:
            run.importable = False
            run.note = f"not importable: pip install 'stockctl[peers]' (or {name})"
            continue
        progress(f"checking {name}'s fills against ours")
        try:
            fills = _liquibook(stream, True)[2] if name == "liquibook" else _lme_fills(stream)
        except Exception as exc:  # a peer's own failure is a finding to report, not ours to raise
            run.note = f"failed: {exc}"
            continue
        run.same_fills = fills == stream.fills
        if not run.same_fills:
            first = next((i for i, (a, b) in enumerate(zip(fills, stream.fills, strict=False)) if a != b), None)
            run.note = f"{len(fills)} fills vs our {len(stream.fills)}; first difference at fill {first}"
            continue
        progress(f"timing {name}")
        timed = (lambda: _liquibook(stream, False)[:2]) if name == "liquibook" else (lambda: _lme_timed(stream))
        rate, cpu = _best(timed, rounds, n)
        run.orders_per_s, run.cpu_orders_per_s = round(rate, 1), round(cpu, 1)
        run.note = f"{len(fills):,} fills, the same as ours"
    return result


__all__ = ["PEERS", "TARGET_VS_LIQUIBOOK", "PeerStream", "PeersResult", "make_peer_stream", "run_peers"]
