"""stockctl.exchange.engine under random command sequences (hypothesis).

Every expectation is computed here, independently: balances from a ledger of the events
(fees recomputed from the fill), reservations from the open orders, and, with funds out of
the way, the whole matching outcome from a naive list-based order book.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stockctl.exchange.engine import FEE_ACCOUNT, Exchange
from stockctl.exchange.wire import (
    DEFAULT_MARKETS,
    Accepted,
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
    Trade,
    encode,
)
from tests.unit.helpers import SCALE
from tests.unit.test_engine_factories import fee, units

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
    kind = draw(st.sampled_from(["limit"] * 4 + ["market"]))
    tif = draw(st.sampled_from(["gtc"] * 6 + ["ioc", "fok"]))
    post_only = kind == "limit" and tif == "gtc" and draw(st.integers(0, 5)) == 0
    return Place(
        user=draw(st.sampled_from(USERS)),
        client_order_id=draw(st.sampled_from(["a", "b", "c", "d", "e", "f"])),
        market=market,
        side=draw(st.sampled_from(["buy", "sell"])),
        type=kind,
        qty=draw(quantities(market)),
        ts=ts,
        price=price_text(market, MID[market] + draw(st.integers(-6, 6))) if kind == "limit" else None,
        tif=tif,
        post_only=post_only,
    )


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
        op = draw(st.integers(0, 19))
        if op < 15:
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

        assert events, "every command gets an answer"
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
    """Orders in plain lists, matched by sorting on every command: slow, obvious, independent."""

    def __init__(self) -> None:
        self.resting: list[dict[str, Any]] = []
        self.next_oid = 1

    def place(self, c: Place) -> list[tuple[Any, ...]]:
        qty = int(c.qty)
        price = units(c.price) if c.price is not None else None
        buy = c.side == "buy"
        if any(o["user"] == c.user and o["coid"] == c.client_order_id for o in self.resting):
            return [("rejected", "duplicate_client_order_id")]
        opposite = [o for o in self.resting if o["market"] == c.market and o["buy"] != buy]
        crossing = [o for o in opposite if price is None or (o["price"] <= price if buy else o["price"] >= price)]
        crossing.sort(key=lambda o: (o["price"] if buy else -o["price"], o["oid"]))
        liquidity = sum(o["rem"] for o in crossing if o["user"] != c.user)
        if price is None and liquidity == 0:
            return [("rejected", "no_liquidity")]
        oid = self.next_oid
        self.next_oid += 1
        out: list[tuple[Any, ...]] = [("accepted", oid)]
        if c.post_only and crossing:
            return [*out, ("cancelled", oid, "post_only", qty)]
        if c.tif == "fok" and liquidity < qty:
            return [*out, ("cancelled", oid, "fok", qty)]
        rem = qty
        for o in crossing:
            if rem == 0:
                break
            if o["user"] == c.user:
                out.append(("cancelled", o["oid"], "self_trade", o["rem"]))
                self.resting.remove(o)
                continue
            n = min(rem, o["rem"])
            o["rem"] -= n
            rem -= n
            out.append(("trade", o["oid"], oid, o["price"], n, o["rem"], rem))
            if o["rem"] == 0:
                self.resting.remove(o)
        if rem:
            if price is not None and c.tif == "gtc":
                self.resting.append(
                    {"oid": oid, "user": c.user, "coid": c.client_order_id, "market": c.market, "buy": buy,
                     "price": price, "rem": rem}
                )  # fmt: skip
            else:
                out.append(("cancelled", oid, "ioc" if price is not None else "no_liquidity", rem))
        return out

    def cancel(self, c: Cancel) -> list[tuple[Any, ...]]:
        for o in self.resting:
            if o["oid"] == c.order_id and o["user"] == c.user and o["market"] == c.market:
                self.resting.remove(o)
                return [("cancelled", o["oid"], "user", o["rem"])]
        return [("rejected", "unknown_order")]

    def cancel_all(self, c: CancelAll) -> list[tuple[Any, ...]]:
        mine = sorted(
            (o for o in self.resting if o["user"] == c.user and o["market"] == c.market), key=lambda o: o["oid"]
        )
        if not mine:
            return [("rejected", "no_open_orders")]
        for o in mine:
            self.resting.remove(o)
        return [("cancelled", o["oid"], "user", o["rem"]) for o in mine]

    def levels(self, market: str, buy: bool) -> list[tuple[int, int, int]]:
        agg: dict[int, list[int]] = {}
        for o in self.resting:
            if o["market"] == market and o["buy"] == buy:
                level = agg.setdefault(o["price"], [0, 0])
                level[0] += o["rem"]
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
    return out


def valid_commands(cmds: list[Command]) -> list[Command]:
    """Drop places the naive book does not validate (bad quantities), and stray Funds."""
    return [
        c
        for c in cmds
        if not isinstance(c, Fund | Place) or (isinstance(c, Place) and c.qty.isdigit() and c.qty != "0")
    ]


@settings(max_examples=150, deadline=None)
@given(cmds=command_lists(rich=True, max_size=60))
def test_matching_agrees_with_a_naive_book(cmds: list[Command]) -> None:
    ex = Exchange()
    for user in USERS:
        ex.apply(Fund(user, "f", {"INR": "1000000000", "TATA": "1000000", "JIO": "1000000"}, 0))
    naive = NaiveBook()

    for cmd in valid_commands(cmds):
        got = summarize(ex.apply(cmd))

        if isinstance(cmd, Place):
            want = naive.place(cmd)
        elif isinstance(cmd, Cancel):
            want = naive.cancel(cmd)
        else:
            want = naive.cancel_all(cmd)  # type: ignore[arg-type]
        assert got == want, cmd
        for market in BOOK_MARKETS:
            view = ex.book(market, depth=1000)
            assert [(units(p), int(q), n) for p, q, n in view.bids] == naive.levels(market, True)
            assert [(units(p), int(q), n) for p, q, n in view.asks] == naive.levels(market, False)
