"""A market's order book: open orders, price levels, pending stops, and what the book can fill.

A price is an integer number of ticks, a quantity of lots (see :class:`MarketRules`, whose rules
a :class:`Market` is built on). Each side keeps its levels in a dict by price and their keys
sorted ascending with the best level last (bids keyed by price, asks by -price), so the best is
``keys[-1]`` and popping it is O(1); a level keeps its orders in time priority. Pending stops
wait outside the book, sorted by (stop price, time priority). The engine changes these
structures as it matches; the queries here (:meth:`Market.fillable`, :meth:`Market.walk_market_buy`)
only read them. Decimal strings only at the edges: :meth:`Market.fmt_price` and friends, and the
public views :class:`OrderView` and :class:`BookView`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from stockctl.exchange.accounts import BPS, FEE_ACCOUNT
from stockctl.exchange.units import fmt_amount, show
from stockctl.exchange.validation import CACHE_MAX, MarketRules, Problem
from stockctl.exchange.views import BookView, OrderView
from stockctl.wire.exchange import MarketSpec

if TYPE_CHECKING:
    from stockctl.exchange.accounts import Account

ACCOUNTS: Final = "ACCOUNTS"
"""The pseudo-market of account events and of commands naming no known market."""


class Order:
    """An open order: resting in the book (limit gtc/gtd, maybe an iceberg) or a pending stop.
    An order that never rests (IOC, FOK, market) is never built."""

    __slots__ = (
        "acct",
        "coid",
        "display",
        "expire",
        "is_buy",
        "kind",
        "market",
        "oid",
        "pending",
        "post_only",
        "price",
        "prio",
        "qty",
        "remaining",
        "reserved",
        "stop",
        "tif",
        "ts",
        "user",
        "visible",
    )

    def __init__(
        self,
        oid: int,
        acct: Account,
        coid: str,
        market: Market,
        is_buy: bool,
        price: int,
        qty: int,
        remaining: int,
        post_only: bool,
        ts: int,
        reserved: int,
        kind: str = "limit",
        tif: str = "gtc",
        stop: int = 0,
        expire: int = 0,
        display: int = 0,
    ) -> None:
        self.oid = oid
        self.acct = acct
        self.user = acct.user
        self.coid = coid
        self.market = market
        self.is_buy = is_buy
        self.price = price  # ticks
        self.qty = qty  # lots, as placed
        self.remaining = remaining  # lots; 0 once the order is done (filled or cancelled)
        self.post_only = post_only
        self.ts = ts
        self.reserved = reserved  # units of quote (buy) or base (sell) held for this order
        self.kind = kind  # as placed: limit, stop (a stop buy's price is its cap) or stop_limit
        self.tif = tif
        self.stop = stop  # ticks; 0: not a stop
        self.pending = stop != 0  # a stop not triggered yet: held, but not in the book
        self.expire = expire  # ns; 0: no expiry (gtd orders only)
        self.display = display  # lots; 0: not an iceberg
        self.visible = display if display and display < remaining else remaining  # what the book shows
        self.prio = 0  # time priority in its level (or among stops); set when it joins the back


class Level:
    """One price of one side: orders in time priority. Cancelled orders stay in the deque as dead
    entries (remaining 0) until they reach the front or the deque is compacted; ``count`` and
    ``qty`` cover live orders only, and a level with no live order is removed from the book.
    ``qty`` is everything that can fill there, icebergs' hidden parts included; ``hidden`` is the
    part the book does not show (so depth is ``qty - hidden``)."""

    __slots__ = ("count", "hidden", "orders", "price", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.count = 0
        self.qty = 0
        self.hidden = 0


class Market(MarketRules):
    """One market: its rules (the MarketSpec's), its book, its pending stops and its event seq."""

    __slots__ = (
        "ask_keys",
        "asks",
        "base",
        "bid_keys",
        "bids",
        "last",
        "pstr",
        "px",
        "qstr",
        "quote",
        "seq",
        "stop_buys",
        "stop_sells",
    )

    def __init__(self, spec: MarketSpec) -> None:
        sym = spec.symbol
        if not isinstance(sym, str) or not sym or sym == ACCOUNTS:
            raise ValueError(f"bad market symbol {show(sym)}")
        if not spec.base or not spec.quote or spec.base == spec.quote:
            raise ValueError(f"{sym}: base and quote must be two different assets")
        if FEE_ACCOUNT in (spec.base, spec.quote):
            raise ValueError(f"{sym}: {FEE_ACCOUNT!r} is not an asset name")
        super().__init__(spec)
        self.base = spec.base
        self.quote = spec.quote
        # Book: price (ticks) -> level; keys sorted ascending with the best level LAST
        # (bids keyed by price, asks by -price), so the best is keys[-1] and popping it is O(1).
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_keys: list[int] = []
        self.ask_keys: list[int] = []
        self.seq = 0
        self.last: int | None = None
        # Pending stops, sorted by (stop price, time priority); each entry is (stop, prio, order).
        self.stop_buys: list[tuple[int, int, Order]] = []
        self.stop_sells: list[tuple[int, int, Order]] = []
        self.px: list[int] = []  # trade prices of the command being applied, while stops are pending
        # Format caches (cleared when large; the parse caches are the rules'). They never affect output.
        self.pstr: dict[int, str] = {}
        self.qstr: dict[int, str] = {}

    # edges ------------------------------------------------------------------------------

    def fmt_price(self, ticks: int) -> str:
        s = self.pstr.get(ticks)
        if s is None:
            s = self.tick.format(ticks)
            if len(self.pstr) >= CACHE_MAX:
                self.pstr.clear()
            self.pstr[ticks] = s
        return s

    def fmt_qty(self, lots: int) -> str:
        s = self.qstr.get(lots)
        if s is None:
            s = self.lot.format(lots)
            if len(self.qstr) >= CACHE_MAX:
                self.qstr.clear()
            self.qstr[lots] = s
        return s

    def view(self, o: Order) -> OrderView:
        """An open order of this market as its owner sees it."""
        return OrderView(
            order_id=o.oid,
            client_order_id=o.coid,
            market=self.symbol,
            side="buy" if o.is_buy else "sell",
            type=o.kind,  # type: ignore[arg-type]
            price=self.fmt_price(o.price) if o.price else None,
            qty=self.fmt_qty(o.qty),
            remaining=self.fmt_qty(o.remaining),
            tif=o.tif,  # type: ignore[arg-type]
            post_only=o.post_only,
            ts=o.ts,
            status="pending" if o.pending else "open",
            stop_price=self.fmt_price(o.stop) if o.stop else None,
            expire_at=o.expire or None,
            display_qty=self.fmt_qty(o.display) if o.display else None,
            visible=self.fmt_qty(o.visible) if o.display and not o.pending else None,
        )

    def depth(self, depth: int) -> BookView:
        """The ``depth`` best levels of each side as shown: an iceberg's hidden part is not depth anyone can see."""
        n = max(0, depth)
        bids = [
            (self.fmt_price(k), self.fmt_qty(lv.qty - lv.hidden), lv.count)
            for k in self.bid_keys[::-1][:n]
            for lv in (self.bids[k],)
        ]
        asks = [
            (self.fmt_price(-k), self.fmt_qty(lv.qty - lv.hidden), lv.count)
            for k in self.ask_keys[::-1][:n]
            for lv in (self.asks[-k],)
        ]
        last = None if self.last is None else self.fmt_price(self.last)
        return BookView(market=self.symbol, bids=bids, asks=asks, last_trade=last, seq=self.seq)

    # what the book can fill -------------------------------------------------------------

    def fillable(self, taker_buys: bool, acct: Account, want: int, limit: int) -> int:
        """Lots the book would fill for ``acct`` up to ``want``, within ``limit``, not counting its own orders."""
        keys, levels = (self.ask_keys, self.asks) if taker_buys else (self.bid_keys, self.bids)
        mine = bool(acct.orders)
        got = 0
        for i in range(len(keys) - 1, -1, -1):
            p = -keys[i] if taker_buys else keys[i]
            if (p > limit) if taker_buys else (p < limit):
                break
            lvl = levels[p]
            if not mine:
                got += lvl.qty
                if got >= want:
                    return want
                continue
            for mo in lvl.orders:
                r = mo.remaining
                if r and mo.acct is not acct:
                    got += r
                    if got >= want:
                        return want
        return got

    def walk_market_buy(self, acct: Account | None, want: int, budget: int, tb: int) -> tuple[int, int, bool]:
        """``(lots, cost, funds_limited)``: what a market buy of ``want`` lots can fill, best ask first,
        skipping the buyer's own asks, while cost + taker fee (``tb`` bps) stays within ``budget`` quote units."""
        keys, levels, qtl = self.ask_keys, self.asks, self.qtl
        mine = acct is not None and bool(acct.orders)
        got = cost = 0
        for i in range(len(keys) - 1, -1, -1):
            p = -keys[i]
            lvl = levels[p]
            if mine:
                a = sum(o.remaining for o in lvl.orders if o.remaining and o.acct is not acct)
                if not a:
                    continue
            else:
                a = lvl.qty
            if a > want - got:
                a = want - got
            u = p * qtl
            total = cost + a * u
            if total + total * tb // BPS > budget:
                # The most lots at this price that the budget covers: x + floor(x*tb/BPS) <= budget
                # holds for x <= budget*BPS // (BPS+tb), and fails for x > that + 2.
                x0 = budget * BPS // (BPS + tb)
                k = min(max(0, (x0 - cost) // u), a)
                while k < a:
                    nxt = cost + (k + 1) * u
                    if nxt + nxt * tb // BPS > budget:
                        break
                    k += 1
                return got + k, cost + k * u, True
            got += a
            cost = total
            if got == want:
                return got, cost, False
        return got, cost, False

    def market_buy_refusal(self, acct: Account | None, have: int, tb: int) -> Problem:
        """Why a market buy cannot fill one lot: no asks but the buyer's, or one lot costs more than ``have``."""
        best = next(
            (
                -k
                for k in reversed(self.ask_keys)
                if any(o.remaining and o.acct is not acct for o in self.asks[-k].orders)
            ),
            None,
        )
        if best is None:
            return "no_liquidity", f"no sell orders in {self.symbol} to buy from (other than yours)"
        cost = best * self.qtl
        need = cost + cost * tb // BPS
        q = self.quote
        return "funds", (
            f"insufficient {q}: one lot ({self.fmt_qty(1)} {self.base}) at the best ask {self.fmt_price(best)} needs"
            f" {fmt_amount(need)} {q} with the taker fee, but {fmt_amount(have)} {q} is available"
        )


__all__ = ["ACCOUNTS", "BookView", "Level", "Market", "Order", "OrderView"]
