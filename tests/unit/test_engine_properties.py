"""stockctl.exchange.engine under random command sequences (hypothesis).

Every expectation is computed here, independently: balances from a ledger of the events
(fees recomputed from the fill), reservations from the open orders, and, with funds out of
the way, the whole matching outcome from a naive list-based order book. The commands mix
every order type: limit, market, stop, stop-limit, good-till-date and iceberg orders, amends,
cancels and time commands.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from stockctl.exchange.accounts import FEE_ACCOUNT
from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import (
    DEFAULT_MARKETS,
    Accepted,
    Amend,
    Amended,
    Cancel,
    CancelAll,
    Cancelled,
    Command,
    Event,
    Fund,
    Funded,
    MarketSpec,
    Place,
    Rejected,
    Time,
    Trade,
    Triggered,
    encode,
)
from tests.support.arithmetic import SCALE
from tests.support.engine import fee, units

USERS = ("u0", "u1", "u2")
# A market with a 1e-6 tick and a 0.01 lot: one tick x one lot is 1 unit of INR, so fees do
# round there (on the default markets, 0.05 x 1 share is 5,000,000 units and never does).
MICRO = MarketSpec("MICRO_INR", "MICRO", "INR", "0.000001", "0.01", "0.01", "1000", "1000")
SPECS = (*DEFAULT_MARKETS, MICRO)
MARKETS = {s.symbol: (s.base, s.quote) for s in SPECS}
BOOK_MARKETS = ("TATA_INR", "JIO_INR")  # the naive-book comparison counts whole shares
MID = {"TATA_INR": 2000, "JIO_INR": 2000, "MICRO_INR": 1_234_567}  # in ticks: 100.00, 100.00, 1.234567


def price_text(market: str, ticks: int) -> str:
    if market == "MICRO_INR":
        return f"{ticks // 10**6}.{ticks % 10**6:06d}"
    cents = ticks * 5
    return f"{cents // 100}.{cents % 100:02d}"


def qty_text(market: str, lots: int) -> str:
    return f"{lots // 100}.{lots % 100:02d}" if market == "MICRO_INR" else str(lots)


def new_exchange(fees: tuple[int, int]) -> Exchange:
    return Exchange(SPECS, taker_fee_bps=fees[0], maker_fee_bps=fees[1])


# --- strategies -----------------------------------------------------------------------------


@st.composite
def quantities(draw: Any, market: str) -> str:
    if draw(st.integers(0, 6)) == 0:  # now and then a bad one: zero, off the lot size, not a number
        return draw(st.sampled_from(["0", "x", "0.005" if market == "MICRO_INR" else "1.5"]))
    return qty_text(market, draw(st.integers(1, 600) if market == "MICRO_INR" else st.integers(1, 6)))


@st.composite
def places(draw: Any, ts: int, markets: tuple[str, ...] = tuple(MARKETS)) -> Place:
    market = draw(st.sampled_from(markets))
    kind = draw(st.sampled_from(["limit"] * 5 + ["market", "stop", "stop_limit"]))
    tif = draw(st.sampled_from(["gtc"] * 6 + ["ioc", "fok", "gtd"]))
    if kind == "market" and tif == "gtd":
        tif = "gtc"
    side = draw(st.sampled_from(["buy", "sell"]))
    rests = tif in ("gtc", "gtd")
    post_only = kind in ("limit", "stop_limit") and rests and draw(st.integers(0, 5)) == 0
    priced = kind in ("limit", "stop_limit") or (kind == "stop" and side == "buy")
    price = price_text(market, MID[market] + draw(st.integers(-6, 6))) if priced else None
    stop = price_text(market, MID[market] + draw(st.integers(-6, 6))) if kind in ("stop", "stop_limit") else None
    expire_at = ts + draw(st.integers(-1, 8)) if tif == "gtd" else None  # now and then already past
    display = None
    if kind == "limit" and rests and draw(st.integers(0, 2)) == 0:
        display = qty_text(market, draw(st.integers(1, 300) if market == "MICRO_INR" else st.integers(1, 4)))
    return Place(
        user=draw(st.sampled_from(USERS)),
        client_order_id=draw(st.sampled_from(["a", "b", "c", "d", "e", "f"])),
        market=market,
        side=side,  # type: ignore[arg-type]
        type=kind,  # type: ignore[arg-type]
        qty=draw(quantities(market)),
        ts=ts,
        price=price,
        tif=tif,  # type: ignore[arg-type]
        post_only=post_only,
        stop_price=stop,
        expire_at=expire_at,
        display_qty=display,
    )


@st.composite
def amends(draw: Any, ts: int, markets: tuple[str, ...], placed: list[Place]) -> Amend:
    # Mostly the user and market of an earlier order, so that many amends find their order.
    like = draw(st.sampled_from(placed)) if placed and draw(st.integers(0, 4)) else None
    market = like.market if like else draw(st.sampled_from(markets))
    price = draw(st.none() | st.integers(-6, 6).map(lambda d: price_text(market, MID[market] + d)))
    qty = draw(st.none() | quantities(market))
    oid = draw(st.integers(max(1, ts // 2 - 6), max(1, ts // 2 + 2)))  # near the ids of recent orders
    user = like.user if like else draw(st.sampled_from(USERS))
    return Amend(user, f"m{ts}", market, oid, ts, price=price, qty=qty)


@st.composite
def command_lists(draw: Any, rich: bool = False, max_size: int = 40) -> list[Command]:
    """Funding first (varied, so funds bind), then places, cancels, cancel-alls and stray Funds.
    ``rich``: funds never bind, and only the default markets (for the naive book)."""
    markets = BOOK_MARKETS if rich else tuple(MARKETS)
    cmds: list[Command] = []
    for user in USERS[: draw(st.integers(2, 3))]:
        inr = "10000000" if rich else draw(st.sampled_from(["150", "800", "5000", "100000"]))
        base = "100000" if rich else str(draw(st.integers(1, 40)))
        cmds.append(Fund(user, f"f-{user}", {"INR": inr, "TATA": base, "JIO": base, "MICRO": base}, 0))
    n = draw(st.integers(min_value=3, max_value=max_size))
    for i in range(1, n + 1):
        op = draw(st.integers(0, 23))
        if op >= 20:
            placed = [c for c in cmds if isinstance(c, Place)]
            cmds.append(draw(amends(i, markets, placed)) if op < 23 else Time(i))
        elif op < 15:
            cmds.append(draw(places(i, markets)))
        elif op < 18:
            user, market = draw(st.sampled_from(USERS)), draw(st.sampled_from(markets))
            cmds.append(Cancel(user, f"c{i}", market, draw(st.integers(1, 12)), i))
        elif op < 19:
            cmds.append(CancelAll(draw(st.sampled_from(USERS)), f"x{i}", draw(st.sampled_from(markets)), i))
        else:
            inr = "10000000" if rich else "3000"
            cmds.append(Fund(draw(st.sampled_from(USERS)), f"f{i}", {"INR": inr, "JIO": "20"}, i))
    return cmds


fees_st = st.tuples(st.sampled_from([10, 7, 25, 0]), st.sampled_from([3, 0, 30, 5]))  # first = simplest: not 0


def run(ex: Exchange, cmds: list[Command]) -> list[list[bytes]]:
    return [[encode(e) for e in ex.apply(c)] for c in cmds]


# --- invariants after every command ---------------------------------------------------------


class Ledger:
    """Balances as the events say they must be, with fees recomputed from each fill."""

    def __init__(self, taker_bps: int, maker_bps: int) -> None:
        self.tb, self.mb = taker_bps, maker_bps
        self.total: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.qty: dict[int, int] = {}
        self.limit: dict[int, int | None] = {}
        self.filled: dict[int, int] = defaultdict(int)

    def apply(self, events: list[Event]) -> None:
        for e in events:
            if isinstance(e, Funded):
                for asset, amount in e.amounts.items():
                    self.total[e.user][asset] += units(amount)
            elif isinstance(e, Accepted):
                self.qty[e.order_id] = units(e.qty)
                self.limit[e.order_id] = units(e.price) if e.price is not None else None
            elif isinstance(e, Amended):
                assert units(e.old_qty) == self.qty[e.order_id]
                assert (units(e.old_price) if e.old_price else None) == self.limit[e.order_id]
                self.qty[e.order_id] = units(e.new_qty)
                self.limit[e.order_id] = units(e.new_price) if e.new_price is not None else None
                assert units(e.remaining) == self.qty[e.order_id] - self.filled[e.order_id]
            elif isinstance(e, Trade):
                self.trade(e)

    def trade(self, t: Trade) -> None:
        base, quote = MARKETS[t.market]
        n = units(t.qty)  # base units
        price = units(t.price)
        assert price == self.limit[t.maker_order_id], "a trade is at the maker's price"
        lim = self.limit[t.taker_order_id]
        if lim is not None:
            assert price <= lim if t.taker_side == "buy" else price >= lim, "a trade is within the taker's limit"
        assert price * n % SCALE == 0, "markets are built so that notionals are whole units"
        amount = price * n // SCALE
        taker_fee, maker_fee = fee(amount, self.tb), fee(amount, self.mb)
        assert (units(t.taker_fee), units(t.maker_fee)) == (taker_fee, maker_fee)
        buyer, seller = (t.taker_user, t.maker_user) if t.taker_side == "buy" else (t.maker_user, t.taker_user)
        buyer_fee, seller_fee = (taker_fee, maker_fee) if t.taker_side == "buy" else (maker_fee, taker_fee)
        self.total[buyer][base] += n
        self.total[buyer][quote] -= amount + buyer_fee
        self.total[seller][base] -= n
        self.total[seller][quote] += amount - seller_fee
        self.total[FEE_ACCOUNT][quote] += taker_fee + maker_fee
        for oid, remaining in ((t.maker_order_id, t.maker_remaining), (t.taker_order_id, t.taker_remaining)):
            self.filled[oid] += n
            assert self.filled[oid] <= self.qty[oid], f"order {oid} filled beyond its quantity"
            assert units(remaining) == self.qty[oid] - self.filled[oid]


def check_state(ex: Exchange, ledger: Ledger, rb: int) -> None:
    assert ex.audit() == []
    for market in MARKETS:
        view = ex.book(market, depth=1000)
        if view.bids and view.asks:
            assert units(view.bids[0][0]) < units(view.asks[0][0]), "book crossed at rest"
        assert all(units(q) > 0 and c > 0 for _, q, c in view.bids + view.asks)
        assert [units(p) for p, _, _ in view.bids] == sorted((units(p) for p, _, _ in view.bids), reverse=True)
        assert [units(p) for p, _, _ in view.asks] == sorted(units(p) for p, _, _ in view.asks)
    for user in (*USERS, FEE_ACCOUNT):
        bal = ex.balances(user)
        reserved: dict[str, int] = defaultdict(int)
        for o in ex.open_orders(user) if user != FEE_ACCOUNT else []:
            base, quote = MARKETS[o.market]
            assert 0 < units(o.remaining) <= units(o.qty)
            if o.side == "buy":
                amount = units(o.price) * units(o.remaining) // SCALE  # type: ignore[arg-type]
                reserved[quote] += amount + fee(amount, rb)
            else:
                reserved[base] += units(o.remaining)
        for asset, (avail, held) in bal.items():
            assert units(avail) >= 0 and units(held) >= 0, f"{user} {asset} negative"
            assert units(avail) + units(held) == ledger.total[user][asset], f"{user} {asset} off the ledger"
            assert units(held) == reserved[asset], f"{user} {asset} reserves more or less than its orders"


def funded_delta(events: list[Event]) -> dict[str, int]:
    delta: dict[str, int] = defaultdict(int)
    for e in events:
        if isinstance(e, Funded):
            for asset, amount in e.amounts.items():
                delta[asset] += units(amount)
    return delta


@settings(max_examples=150, deadline=None)
@given(cmds=command_lists(), fees=fees_st)
def test_random_sequences_keep_every_invariant(cmds: list[Command], fees: tuple[int, int]) -> None:
    ex = new_exchange(fees)
    ledger = Ledger(*fees)
    rb = max(fees)
    totals = ex.totals()

    for cmd in cmds:
        events = ex.apply(cmd)

        assert events or isinstance(cmd, Time), "every command gets an answer (a time command: its expiries)"
        ledger.apply(events)
        check_state(ex, ledger, rb)
        now = ex.totals()
        delta = funded_delta(events)
        assert now == {a: totals[a] + delta.get(a, 0) for a in totals}, "totals move only by Fund"
        totals = now


@settings(max_examples=60, deadline=None)
@given(cmds=command_lists(), fees=fees_st)
def test_events_are_numbered_per_market_without_gaps(cmds: list[Command], fees: tuple[int, int]) -> None:
    ex = new_exchange(fees)
    last: dict[str, int] = defaultdict(int)
    ids: list[int] = []
    trades: list[int] = []

    for cmd in cmds:
        for e in ex.apply(cmd):
            assert e.seq == last[e.market] + 1
            last[e.market] = e.seq
            assert e.ts == cmd.ts
            if isinstance(e, Accepted):
                ids.append(e.order_id)
            elif isinstance(e, Trade):
                trades.append(e.trade_id)

    assert ids == list(range(1, len(ids) + 1))
    assert trades == list(range(1, len(trades) + 1))


@settings(max_examples=40, deadline=None)
@given(cmds=command_lists(), fees=fees_st)
def test_replaying_the_same_commands_gives_the_same_bytes(cmds: list[Command], fees: tuple[int, int]) -> None:
    first = run(new_exchange(fees), cmds)
    second = run(new_exchange(fees), cmds)

    assert first == second


@settings(max_examples=60, deadline=None)
@given(cmds=command_lists(), fees=fees_st, data=st.data())
def test_snapshot_and_restore_mid_sequence_changes_nothing(
    cmds: list[Command], fees: tuple[int, int], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(cmds)))
    straight = new_exchange(fees)
    expected = run(straight, cmds)[cut:]
    before = new_exchange(fees)
    run(before, cmds[:cut])

    data_bytes = before.snapshot()
    restored = Exchange.restore(data_bytes)

    assert restored.snapshot() == data_bytes
    assert run(restored, cmds[cut:]) == expected
    assert restored.snapshot() == straight.snapshot()


# --- a naive reference book (funds out of the way) ------------------------------------------


class NaiveBook:
    """Orders in plain lists, matched by sorting on every step: slow, obvious, independent.

    Resting orders carry ``vis`` (what the book shows: all of it, or an iceberg's display) and
    ``prio`` (a counter taken whenever an order joins the back of its level); pending stops sit
    in their own list; ``last`` is each market's last trade price."""

    def __init__(self) -> None:
        self.resting: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.last: dict[str, int | None] = defaultdict(lambda: None)
        self.next_oid = 1
        self.clock = 0
        self.prices: list[int] = []  # trade prices since the stops were last checked

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def expire(self, ts: int) -> list[tuple[Any, ...]]:
        due = [o for o in self.resting + self.stops if o["expire"] and o["expire"] <= ts]
        out = []
        for o in sorted(due, key=lambda o: (o["expire"], o["oid"])):
            (self.stops if o in self.stops else self.resting).remove(o)
            out.append(("cancelled", o["oid"], "expired", o["rem"]))
        return out

    def mine(self, user: str) -> list[dict[str, Any]]:
        return [o for o in self.resting + self.stops if o["user"] == user]

    def place(self, c: Place) -> list[tuple[Any, ...]]:
        qty = int(c.qty)
        price = units(c.price) if c.price is not None else None
        buy = c.side == "buy"
        if c.tif == "gtd" and c.expire_at <= 0:  # type: ignore[operator]
            return [("rejected", "bad_expire_at")]  # not a time at all (epoch 0 or before)
        if c.tif == "gtd" and c.expire_at <= c.ts:  # type: ignore[operator]
            return [("rejected", "expire_in_past")]
        if c.stop_price is not None:
            stop, last = units(c.stop_price), self.last[c.market]
            if last is not None and (last >= stop if buy else last <= stop):
                return [("rejected", "would_trigger")]
        if any(o["coid"] == c.client_order_id for o in self.mine(c.user)):
            return [("rejected", "duplicate_client_order_id")]
        order = {
            "user": c.user, "coid": c.client_order_id, "market": c.market, "buy": buy, "price": price,
            "qty": qty, "rem": qty, "tif": c.tif, "post_only": c.post_only, "expire": c.expire_at or 0,
            "display": int(c.display_qty) if c.display_qty else 0, "kind": c.type,
        }  # fmt: skip
        if c.type in ("stop", "stop_limit"):
            order |= {"oid": self.next_oid, "stop": units(c.stop_price), "prio": self.tick()}  # type: ignore[arg-type]
            self.next_oid += 1
            self.stops.append(order)
            return [("accepted", order["oid"])]
        if c.type == "market" and self.liquidity(order) == 0:
            return [("rejected", "no_liquidity")]
        order["oid"] = self.next_oid
        self.next_oid += 1
        out: list[tuple[Any, ...]] = [("accepted", order["oid"])]
        before = self.last[c.market]
        self.enter(order, out)
        self.triggers(c.market, before, out)
        return out

    def crossing(self, o: dict[str, Any]) -> list[dict[str, Any]]:
        """The resting orders ``o`` could trade with, in the order it would meet them."""
        buy, price = o["buy"], o["price"]
        found = [
            r
            for r in self.resting
            if r["market"] == o["market"]
            and r["buy"] != buy
            and (price is None or (r["price"] <= price if buy else r["price"] >= price))
        ]
        return sorted(found, key=lambda r: (r["price"] if buy else -r["price"], r["prio"]))

    def liquidity(self, o: dict[str, Any]) -> int:
        return sum(r["rem"] for r in self.crossing(o) if r["user"] != o["user"])

    def enter(self, o: dict[str, Any], out: list[tuple[Any, ...]]) -> None:
        """Match an incoming order; rest what is left if it is a limit gtc / gtd order."""
        oid, market_like = o["oid"], o["kind"] in ("market", "stop")
        if o["post_only"] and self.crossing(o):
            out.append(("cancelled", oid, "post_only", o["rem"]))
            return
        if o["tif"] == "fok" and self.liquidity(o) < o["rem"]:
            out.append(("cancelled", oid, "fok", o["rem"]))
            return
        if market_like and self.liquidity(o) == 0:  # a triggered stop with nothing to take
            out.append(("cancelled", oid, "no_liquidity", o["rem"]))
            return
        while o["rem"]:
            ahead = self.crossing(o)
            if not ahead:
                break
            r = ahead[0]
            if r["user"] == o["user"]:
                out.append(("cancelled", r["oid"], "self_trade", r["rem"]))
                self.resting.remove(r)
                continue
            n = min(o["rem"], r["vis"])
            r["rem"] -= n
            r["vis"] -= n
            o["rem"] -= n
            self.last[o["market"]] = r["price"]
            self.prices.append(r["price"])
            out.append(("trade", r["oid"], oid, r["price"], n, r["rem"], o["rem"]))
            if r["rem"] == 0:
                self.resting.remove(r)
            elif r["vis"] == 0:  # an iceberg: show the next part, at the back of the level
                r["vis"] = min(r["display"], r["rem"])
                r["prio"] = self.tick()
        if o["rem"]:
            if not market_like and o["tif"] in ("gtc", "gtd"):
                o["vis"] = min(o["display"], o["rem"]) if o["display"] else o["rem"]
                o["prio"] = self.tick()
                self.resting.append(o)
            else:
                out.append(("cancelled", oid, "no_liquidity" if market_like else "ioc", o["rem"]))

    def triggers(self, market: str, before: int | None, out: list[tuple[Any, ...]]) -> None:
        queue: list[dict[str, Any]] = []
        while True:
            prices, self.prices = self.prices, []
            ref = before
            for p in prices:
                hit = [
                    s for s in self.stops if s["market"] == market and (s["stop"] <= p if s["buy"] else s["stop"] >= p)
                ]

                def rank(s: dict[str, Any], p: int = p, ref: int | None = ref) -> tuple[int, int]:
                    # With a trade before: how far the market moved from it to the stop. With none:
                    # how far this trade overshot the stop (the market came from below to a buy stop
                    # and from above to a sell stop, so the largest overshoot was reached first).
                    if ref is not None:
                        return (s["stop"] - ref if s["buy"] else ref - s["stop"]), s["prio"]
                    return -(p - s["stop"] if s["buy"] else s["stop"] - p), s["prio"]

                for s in sorted(hit, key=rank):
                    self.stops.remove(s)
                    queue.append(s)
                ref = p
            if not queue:
                return
            s = queue.pop(0)
            out.append(("triggered", s["oid"]))
            before = self.last[market]
            self.enter(s, out)

    def amend(self, c: Amend) -> list[tuple[Any, ...]]:
        o = next((o for o in self.mine(c.user) if o["oid"] == c.order_id and o["market"] == c.market), None)
        if o is None:
            return [("rejected", "unknown_order")]
        if c.price is None and c.qty is None:
            return [("rejected", "bad_amend")]
        if c.price is not None and o["price"] is None:
            return [("rejected", "price_not_allowed")]
        price = units(c.price) if c.price is not None else o["price"]
        qty = int(c.qty) if c.qty is not None else o["qty"]
        filled = o["qty"] - o["rem"]
        if qty <= filled or qty == 0:
            return [("rejected", "bad_qty")]
        rem = qty - filled
        pending = o in self.stops
        if not pending and o["post_only"] and self.crossing(dict(o, price=price)):
            return [("rejected", "post_only")]
        keeps = price == o["price"] and rem <= o["rem"]
        out: list[tuple[Any, ...]] = [("amended", o["oid"], "kept" if keeps else "lost")]
        if pending or keeps:
            o.update(price=price, qty=qty, rem=rem)
            o["vis"] = min(o.get("vis", rem), rem)
            if not keeps:
                o["prio"] = self.tick()
            return out
        self.resting.remove(o)
        o.update(price=price, qty=qty, rem=rem)
        before = self.last[c.market]
        self.enter(o, out)
        self.triggers(c.market, before, out)
        return out

    def cancel(self, c: Cancel) -> list[tuple[Any, ...]]:
        for o in self.mine(c.user):
            if o["oid"] == c.order_id and o["market"] == c.market:
                (self.stops if o in self.stops else self.resting).remove(o)
                return [("cancelled", o["oid"], "user", o["rem"])]
        return [("rejected", "unknown_order")]

    def cancel_all(self, c: CancelAll) -> list[tuple[Any, ...]]:
        mine = sorted((o for o in self.mine(c.user) if o["market"] == c.market), key=lambda o: o["oid"])
        if not mine:
            return [("rejected", "no_open_orders")]
        for o in mine:
            (self.stops if o in self.stops else self.resting).remove(o)
        return [("cancelled", o["oid"], "user", o["rem"]) for o in mine]

    def apply(self, c: Command) -> list[tuple[Any, ...]]:
        out = self.expire(c.ts)
        if isinstance(c, Place):
            return out + self.place(c)
        if isinstance(c, Amend):
            return out + self.amend(c)
        if isinstance(c, Cancel):
            return out + self.cancel(c)
        if isinstance(c, CancelAll):
            return out + self.cancel_all(c)
        return out  # a time command

    def levels(self, market: str, buy: bool) -> list[tuple[int, int, int]]:
        agg: dict[int, list[int]] = {}
        for o in self.resting:
            if o["market"] == market and o["buy"] == buy:
                level = agg.setdefault(o["price"], [0, 0])
                level[0] += o["vis"]
                level[1] += 1
        return [(p, q, n) for p, (q, n) in sorted(agg.items(), reverse=buy)]


def summarize(events: list[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, Accepted):
            out.append(("accepted", e.order_id))
        elif isinstance(e, Rejected):
            out.append(("rejected", e.code))
        elif isinstance(e, Cancelled):
            out.append(("cancelled", e.order_id, e.reason, int(e.remaining)))
        elif isinstance(e, Trade):
            out.append(
                ("trade", e.maker_order_id, e.taker_order_id, units(e.price), int(e.qty), int(e.maker_remaining),
                 int(e.taker_remaining))
            )  # fmt: skip
        elif isinstance(e, Amended):
            out.append(("amended", e.order_id, e.priority))
        elif isinstance(e, Triggered):
            out.append(("triggered", e.order_id))
    return out


def naive_valid(c: Command) -> bool:
    """The commands the naive book models: no bad quantities (it does not parse them), no Funds."""
    if isinstance(c, Place):
        ok = c.qty.isdigit() and c.qty != "0"
        return ok and (c.display_qty is None or (c.display_qty.isdigit() and 0 < int(c.display_qty) <= int(c.qty)))
    if isinstance(c, Amend):
        return c.qty is None or c.qty.isdigit()
    return not isinstance(c, Fund)


def _stop(user: str, coid: str, side: str, kind: str, price: str | None, stop: str | None = None) -> Place:
    return Place(user, coid, "TATA_INR", side, kind, "1", 1, price=price, stop_price=stop)  # type: ignore[arg-type]


# No trade before: the first one (at 100.15) hits buy and sell stops together, in a fixed order.
NO_LAST_TRADE = [
    _stop("u0", "a", "buy", "stop", "100.30", "100.10"),
    _stop("u1", "b", "buy", "stop", "100.30", "100.00"),
    _stop("u0", "c", "sell", "stop", None, "100.15"),
    _stop("u1", "d", "sell", "stop", None, "100.25"),
    _stop("u2", "e", "sell", "limit", "100.15"),
    _stop("u2", "f", "sell", "limit", "100.20"),
    _stop("u1", "g", "buy", "limit", "100.15"),
]


@settings(max_examples=200, deadline=None)
@given(cmds=command_lists(rich=True, max_size=60))
@example(cmds=NO_LAST_TRADE)
def test_matching_agrees_with_a_naive_book(cmds: list[Command]) -> None:
    ex = Exchange()
    for user in USERS:
        ex.apply(Fund(user, "f", {"INR": "1000000000", "TATA": "1000000", "JIO": "1000000"}, 0))
    naive = NaiveBook()

    for cmd in [c for c in cmds if naive_valid(c)]:
        got = summarize(ex.apply(cmd))

        want = naive.apply(cmd)
        assert got == want, cmd
        for market in BOOK_MARKETS:
            view = ex.book(market, depth=1000)
            assert [(units(p), int(q), n) for p, q, n in view.bids] == naive.levels(market, True)
            assert [(units(p), int(q), n) for p, q, n in view.asks] == naive.levels(market, False)
