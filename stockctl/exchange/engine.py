"""The matching engine: order books, accounts and settlement as one pure state machine.

``Exchange.apply(command) -> [events]`` is the whole interface the matching daemon drives.
There is no I/O, no clock (every event carries its command's ``ts``), no randomness and no
float: the same commands give the same events, byte for byte, and ``snapshot()`` /
``restore()`` carry the exact state (sequences, ids, books in time priority, balances).

Units. Inside, a price is an integer number of ticks, a quantity an integer number of lots
and a balance an integer number of 1e-8 units of its asset. A market is accepted only if one
lot is a whole number of base units (``bpl``) and one tick times one lot a whole number of
quote units (``qtl``), so a fill's notional ``ticks * lots * qtl`` is exact. Decimal strings
only at the edges (commands in, events and views out).

Accounts. Every account holds, per asset, ``available`` and ``reserved`` amounts; reserved is
exactly what the account's resting orders may still spend: a resting buy holds
``notional + floor(notional * fee_bps / 10000)`` quote for its remaining lots at its limit
price, with ``fee_bps = max(taker, maker)`` (it may end up on either side), and a resting
sell holds its remaining lots in base. An order is accepted only if available covers what
it may spend: a limit buy that amount for its whole quantity, a sell its quantity, and a
market buy the cost of walking the book (best ask first, skipping the buyer's own asks,
which self-trade prevention cancels rather than fills) plus taker fee, where the order is
capped at what the buyer's available quote pays for. An account exists once funded (``Fund``,
once per user); before that a user has nothing to spend.

A fill settles both sides at the maker's price; each side pays its fee (taker or maker bps of
the fill's quote notional, rounded down to the unit) in quote to the fee account
``__fees__``: a buyer pays notional + fee, a seller receives notional - fee. Makers settle
fill by fill (a resting buy's excess, from fee rounding, is freed at once); the incoming
order settles once when matching ends: what it spent leaves available, and if it rests,
what its remainder may cost moves to reserved. Hence, per asset, the sum over all accounts
of available + reserved (``totals()``) only changes on ``Fund``.

Orders. Price-time priority; the trade price is the maker's. Limit GTC rests; IOC cancels its
remainder (``ioc``); FOK is checked against the book before anything is touched and is
cancelled whole (``fok``) unless it can fill completely; a post-only order that would cross
(any resting order at a crossing price, the user's own included) is cancelled (``post_only``)
without trading; market orders never rest: a remainder is cancelled with ``no_liquidity``
(the book ran out) or ``funds`` (a market buy capped by the buyer's quote). A market order
that cannot fill even one lot is Rejected instead (``no_liquidity`` / ``funds``): nothing
changed. Self-trade prevention: an incoming order never fills against its user's resting
order; that resting order is cancelled (``self_trade``) and matching continues (a market buy
capped by funds stops where its funds do). Only limit GTC orders ever rest.

Events. Each market numbers its events ``seq`` 1, 2, 3... The pseudo-market ``ACCOUNTS`` has
its own sequence and carries ``Funded``, rejected ``Fund`` commands, and the rejection of any
command that names no known market or is malformed (so no sequence, and no event subject, is
ever made from an arbitrary market name). Order ids and trade ids are global and consecutive. Every
order event sequence is ``Accepted``, then ``Cancelled(self_trade)`` / ``Trade`` events in
matching order, then at most one ``Cancelled`` for the remainder. ``CancelAll`` with nothing
to cancel is a ``Rejected`` (``no_open_orders``), so every command gets an answer.

Rejection codes: ``unknown_market``, ``bad_command``, ``bad_user``, ``bad_client_order_id``,
``bad_side``, ``bad_type``, ``bad_tif``, ``bad_post_only``, ``post_only_market``,
``post_only_tif``, ``price_required``, ``price_not_allowed``, ``bad_qty``, ``lot_size``,
``min_qty``, ``max_qty``, ``bad_price``, ``tick_size``, ``price_range``,
``duplicate_client_order_id``, ``funds``, ``no_liquidity``, ``unknown_order``,
``no_open_orders``, ``already_funded``, ``unknown_asset``, ``bad_amount``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Sequence

import msgspec

from stockctl.exchange.units import (
    ASSET_DP,
    ASSET_SCALE,
    Step,
    asset_units,
    fmt_amount,
    parse_decimal,
    show,
)
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
    OrderType,
    Place,
    Rejected,
    Side,
    TimeInForce,
    Trade,
)

FEE_ACCOUNT = "__fees__"
"""The account fees are paid to; no command may act as this user."""
ACCOUNTS = "ACCOUNTS"
"""The pseudo-market of account events and of commands naming no known market."""
BPS = 10_000
MAX_NAME = 128
"""Longest user name, client order id or request id accepted (bounds what state a command can add)."""
MAX_FUND_UNITS = 10**12 * ASSET_SCALE
"""Largest single Fund amount of one asset (a trillion): anything above is bad input."""
MAX_STEPS = 10**15
"""A market's max price / max quantity may be at most this many ticks / lots."""
SNAPSHOT_VERSION = 1
_CACHE_MAX = 1 << 16
_TIFS = ("gtc", "ioc", "fok")
_MARKET_PRICE = "a market order takes no price (it fills at the best prices in the book); use a limit order to set one"
_MARKET_POST_ONLY = "post_only applies to limit orders only: a market order always takes liquidity"


class UnknownMarket(KeyError):
    """A query named a market the exchange does not have."""


class OrderView(msgspec.Struct, frozen=True):
    """One open (resting) order, as its owner sees it."""

    order_id: int
    client_order_id: str
    market: str
    side: Side
    type: OrderType
    price: str | None
    qty: str
    remaining: str
    tif: TimeInForce
    post_only: bool
    ts: int


class BookView(msgspec.Struct, frozen=True):
    """Aggregated depth, best level first: ``(price, total remaining qty, order count)``."""

    market: str
    bids: list[tuple[str, str, int]]
    asks: list[tuple[str, str, int]]
    last_trade: str | None
    seq: int


# --- internal state -----------------------------------------------------------------------


class _Account:
    __slots__ = ("avail", "coids", "held", "orders", "user")

    def __init__(self, user: str, assets: Sequence[str]) -> None:
        self.user = user
        self.avail: dict[str, int] = dict.fromkeys(assets, 0)
        self.held: dict[str, int] = dict.fromkeys(assets, 0)
        self.orders: dict[int, _Order] = {}  # open (resting) orders, by id, in id order
        self.coids: dict[str, int] = {}  # client_order_id -> id of the open order using it


class _Order:
    """A resting order. Only limit GTC orders rest (IOC, FOK and market orders never do), so
    type and time in force are implied; an order that never rests is never built."""

    __slots__ = (
        "acct",
        "coid",
        "is_buy",
        "market",
        "oid",
        "post_only",
        "price",
        "qty",
        "remaining",
        "reserved",
        "ts",
        "user",
    )

    def __init__(
        self,
        oid: int,
        acct: _Account,
        coid: str,
        market: _Market,
        is_buy: bool,
        price: int,
        qty: int,
        remaining: int,
        post_only: bool,
        ts: int,
        reserved: int,
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


class _Level:
    """One price of one side: orders in time priority. Cancelled orders stay in the deque as dead
    entries (remaining 0) until they reach the front or the deque is compacted; ``count`` and
    ``qty`` cover live orders only, and a level with no live order is removed from the book."""

    __slots__ = ("count", "orders", "price", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[_Order] = deque()
        self.count = 0
        self.qty = 0


class _Market:
    __slots__ = (
        "ask_keys",
        "asks",
        "base",
        "bid_keys",
        "bids",
        "bpl",
        "last",
        "lot",
        "max_lots",
        "max_ticks",
        "min_lots",
        "price_cache",
        "pstr",
        "qstr",
        "qtl",
        "qty_cache",
        "quote",
        "seq",
        "spec",
        "symbol",
        "tick",
    )

    def __init__(self, spec: MarketSpec) -> None:
        sym = spec.symbol
        if not isinstance(sym, str) or not sym or sym == ACCOUNTS:
            raise ValueError(f"bad market symbol {show(sym)}")
        if not spec.base or not spec.quote or spec.base == spec.quote:
            raise ValueError(f"{sym}: base and quote must be two different assets")
        if FEE_ACCOUNT in (spec.base, spec.quote):
            raise ValueError(f"{sym}: {FEE_ACCOUNT!r} is not an asset name")
        try:
            tick, lot = Step(spec.tick_size), Step(spec.lot_size)
        except ValueError as exc:
            raise ValueError(f"{sym}: tick and lot sizes must be positive decimals: {exc}") from None
        if tick.dp > ASSET_DP or lot.dp > ASSET_DP:
            raise ValueError(f"{sym}: tick and lot sizes may have at most {ASSET_DP} decimals")
        qtl, rem = divmod(tick.num * lot.num * ASSET_SCALE, 10 ** (tick.dp + lot.dp))
        if rem:
            raise ValueError(
                f"{sym}: tick size {spec.tick_size} x lot size {spec.lot_size} is not a whole number of"
                f" 1e-{ASSET_DP} {spec.quote} units, so fills could not be settled exactly"
            )
        self.spec = spec
        self.symbol = sym
        self.base = spec.base
        self.quote = spec.quote
        self.tick = tick
        self.lot = lot
        self.qtl = qtl  # quote units per (1 tick x 1 lot)
        self.bpl = lot.num * 10 ** (ASSET_DP - lot.dp)  # base units per lot
        self.min_lots = self._steps(spec.min_qty, lot, "min_qty")
        self.max_lots = self._steps(spec.max_qty, lot, "max_qty")
        self.max_ticks = self._steps(spec.max_price, tick, "max_price")
        if self.min_lots > self.max_lots:
            raise ValueError(f"{sym}: min_qty {spec.min_qty} is above max_qty {spec.max_qty}")
        # Book: price (ticks) -> level; keys sorted ascending with the best level LAST
        # (bids keyed by price, asks by -price), so the best is keys[-1] and popping it is O(1).
        self.bids: dict[int, _Level] = {}
        self.asks: dict[int, _Level] = {}
        self.bid_keys: list[int] = []
        self.ask_keys: list[int] = []
        self.seq = 0
        self.last: int | None = None
        # Parse and format caches (valid values only; cleared when large). They never affect output.
        self.qty_cache: dict[str, int] = {}
        self.price_cache: dict[str, int] = {}
        self.pstr: dict[int, str] = {}
        self.qstr: dict[int, str] = {}

    def _steps(self, text: str, step: Step, name: str) -> int:
        parsed = parse_decimal(text)
        k = step.count(*parsed) if parsed is not None else None
        if not k or k > MAX_STEPS:
            raise ValueError(f"{self.symbol}: {name} {show(text)} must be a positive multiple of {step.text}")
        return k

    # edges ------------------------------------------------------------------------------

    def fmt_price(self, ticks: int) -> str:
        s = self.pstr.get(ticks)
        if s is None:
            s = self.tick.format(ticks)
            if len(self.pstr) >= _CACHE_MAX:
                self.pstr.clear()
            self.pstr[ticks] = s
        return s

    def fmt_qty(self, lots: int) -> str:
        s = self.qstr.get(lots)
        if s is None:
            s = self.lot.format(lots)
            if len(self.qstr) >= _CACHE_MAX:
                self.qstr.clear()
            self.qstr[lots] = s
        return s

    def parse_qty(self, text: object) -> tuple[int, None] | tuple[None, tuple[str, str]]:
        parsed = parse_decimal(text)
        if parsed is None:
            if isinstance(text, str) and text[:1] == "-" and parse_decimal(text[1:]) is not None:
                return None, ("bad_qty", f"quantity must be above zero, not {show(text)}")
            return None, ("bad_qty", f"quantity {show(text)} is not a plain decimal number like 10 or 2.5")
        if parsed[0] == 0:
            return None, ("bad_qty", f"quantity must be above zero, not {text}")
        lots = self.lot.count(*parsed)
        if lots is None:
            return None, ("lot_size", f"quantity {text} is not a multiple of the lot size {self.spec.lot_size}")
        if lots < self.min_lots:
            return None, ("min_qty", f"quantity {text} is below the minimum {self.spec.min_qty} for {self.symbol}")
        if lots > self.max_lots:
            return None, ("max_qty", f"quantity {text} is above the maximum {self.spec.max_qty} for {self.symbol}")
        if len(self.qty_cache) >= _CACHE_MAX:
            self.qty_cache.clear()
        self.qty_cache[text] = lots  # type: ignore[index]
        return lots, None

    def parse_price(self, text: object) -> tuple[int, None] | tuple[None, tuple[str, str]]:
        parsed = parse_decimal(text)
        if parsed is None:
            if isinstance(text, str) and text[:1] == "-" and parse_decimal(text[1:]) is not None:
                return None, ("bad_price", f"price must be above zero, not {show(text)}")
            return None, ("bad_price", f"price {show(text)} is not a plain decimal number like 100 or 99.95")
        if parsed[0] == 0:
            return None, ("bad_price", f"price must be above zero, not {text}")
        ticks = self.tick.count(*parsed)
        if ticks is None:
            return None, ("tick_size", f"price {text} is not a multiple of the tick size {self.spec.tick_size}")
        if ticks > self.max_ticks:
            return None, (
                "price_range",
                f"price {text} is above the maximum {self.spec.max_price} for {self.symbol}",
            )
        if len(self.price_cache) >= _CACHE_MAX:
            self.price_cache.clear()
        self.price_cache[text] = ticks  # type: ignore[index]
        return ticks, None


# --- snapshot format ----------------------------------------------------------------------


class _SnapOrder(msgspec.Struct, array_like=True):
    oid: int
    user: str
    coid: str
    price: int
    qty: int
    remaining: int
    post_only: bool
    ts: int
    reserved: int


class _SnapBook(msgspec.Struct):
    symbol: str
    seq: int
    last_trade: int | None
    bids: list[_SnapOrder]  # best level first, time priority within a level
    asks: list[_SnapOrder]


class _SnapAccount(msgspec.Struct):
    user: str
    avail: dict[str, int]
    held: dict[str, int]


class _Snapshot(msgspec.Struct):
    version: int
    markets: list[MarketSpec]
    taker_fee_bps: int
    maker_fee_bps: int
    next_order_id: int
    next_trade_id: int
    accounts_seq: int
    books: list[_SnapBook]
    fees: _SnapAccount
    accounts: list[_SnapAccount]  # in funding order


_snap_encode = msgspec.json.Encoder().encode
_snap_decoder = msgspec.json.Decoder(_Snapshot)


# --- the engine ---------------------------------------------------------------------------


def _check_bps(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= BPS:
        raise ValueError(f"{name} must be an integer from 0 to {BPS}, not {value!r}")
    return value


class Exchange:
    """Markets, their order books and the accounts trading on them. See the module docstring."""

    __slots__ = (
        "_accounts",
        "_accounts_seq",
        "_assets",
        "_fee_str",
        "_fees",
        "_known",
        "_markets",
        "_mb",
        "_next_oid",
        "_next_tid",
        "_rb",
        "_tb",
    )

    def __init__(
        self, markets: Sequence[MarketSpec] = DEFAULT_MARKETS, taker_fee_bps: int = 10, maker_fee_bps: int = 0
    ) -> None:
        self._tb = _check_bps("taker_fee_bps", taker_fee_bps)
        self._mb = _check_bps("maker_fee_bps", maker_fee_bps)
        self._rb = max(self._tb, self._mb)  # what a limit buy reserves for its fee
        self._markets: dict[str, _Market] = {}
        assets: dict[str, None] = {}
        for spec in markets:
            if not isinstance(spec, MarketSpec):
                raise ValueError(f"not a MarketSpec: {spec!r}")
            if spec.symbol in self._markets:
                raise ValueError(f"market {spec.symbol} is listed twice")
            self._markets[spec.symbol] = _Market(spec)
            assets[spec.base] = None
            assets[spec.quote] = None
        if not self._markets:
            raise ValueError("an exchange needs at least one market")
        self._assets: tuple[str, ...] = tuple(assets)
        self._accounts: dict[str, _Account] = {}
        self._fees = _Account(FEE_ACCOUNT, self._assets)
        self._accounts_seq = 0
        self._next_oid = 1
        self._next_tid = 1
        self._known = ", ".join(self._markets)
        self._fee_str: dict[int, str] = {0: "0"}  # fee units -> text (a cache; never affects output)

    # --- queries -------------------------------------------------------------------------

    @property
    def markets(self) -> tuple[MarketSpec, ...]:
        return tuple(m.spec for m in self._markets.values())

    @property
    def assets(self) -> tuple[str, ...]:
        return self._assets

    @property
    def fees_bps(self) -> tuple[int, int]:
        """``(taker, maker)`` fee in basis points of a fill's quote notional."""
        return self._tb, self._mb

    def market_spec(self, market: str) -> MarketSpec:
        return self._market(market).spec

    def _market(self, market: str) -> _Market:
        m = self._markets.get(market) if isinstance(market, str) else None
        if m is None:
            raise UnknownMarket(f"unknown market {show(market)}: known markets are {self._known}")
        return m

    def is_funded(self, user: str) -> bool:
        return user in self._accounts

    def balances(self, user: str) -> dict[str, tuple[str, str]]:
        """asset -> (available, reserved) as decimal strings, for every asset (zeros for an unknown user)."""
        acct = self._fees if user == FEE_ACCOUNT else self._accounts.get(user)
        if acct is None:
            return {a: ("0", "0") for a in self._assets}
        return {a: (fmt_amount(acct.avail[a]), fmt_amount(acct.held[a])) for a in self._assets}

    def balance_units(self, user: str) -> dict[str, tuple[int, int]]:
        """Like :meth:`balances`, in integer 1e-8 units."""
        acct = self._fees if user == FEE_ACCOUNT else self._accounts.get(user)
        if acct is None:
            return {a: (0, 0) for a in self._assets}
        return {a: (acct.avail[a], acct.held[a]) for a in self._assets}

    def open_orders(self, user: str, market: str | None = None) -> list[OrderView]:
        """The user's resting orders (in one market, or all), oldest first."""
        m = None if market is None else self._market(market)
        acct = self._accounts.get(user)
        if acct is None:
            return []
        return [self._view(o) for o in acct.orders.values() if m is None or o.market is m]

    @staticmethod
    def _view(o: _Order) -> OrderView:
        m = o.market
        return OrderView(
            order_id=o.oid,
            client_order_id=o.coid,
            market=m.symbol,
            side="buy" if o.is_buy else "sell",
            type="limit",
            price=m.fmt_price(o.price),
            qty=m.fmt_qty(o.qty),
            remaining=m.fmt_qty(o.remaining),
            tif="gtc",
            post_only=o.post_only,
            ts=o.ts,
        )

    def book(self, market: str, depth: int = 20) -> BookView:
        """Depth of one market, best level first; ``seq`` is the market's last event seq."""
        m = self._market(market)
        n = max(0, depth)
        bids = [(m.fmt_price(k), m.fmt_qty(m.bids[k].qty), m.bids[k].count) for k in m.bid_keys[::-1][:n]]
        asks = [(m.fmt_price(-k), m.fmt_qty(m.asks[-k].qty), m.asks[-k].count) for k in m.ask_keys[::-1][:n]]
        last = None if m.last is None else m.fmt_price(m.last)
        return BookView(market=m.symbol, bids=bids, asks=asks, last_trade=last, seq=m.seq)

    def seq(self, market: str) -> int:
        """The last event seq of a market (or of ``ACCOUNTS``); 0 before any event."""
        if market == ACCOUNTS:
            return self._accounts_seq
        return self._market(market).seq

    def totals(self) -> dict[str, int]:
        """Per asset, available + reserved summed over every account (users and fees), in 1e-8 units."""
        out = dict.fromkeys(self._assets, 0)
        for acct in (*self._accounts.values(), self._fees):
            for a in self._assets:
                out[a] += acct.avail[a] + acct.held[a]
        return out

    def _reserve_for(self, o: _Order) -> int:
        """What a resting order must hold for its remaining quantity."""
        m = o.market
        if not o.is_buy:
            return o.remaining * m.bpl
        notional = o.price * o.remaining * m.qtl
        return notional + notional * self._rb // BPS

    def audit(self) -> list[str]:
        """Every broken internal invariant, described (empty when the state is consistent)."""
        problems: list[str] = []
        held: dict[str, dict[str, int]] = {u: dict.fromkeys(self._assets, 0) for u in self._accounts}
        live: set[int] = set()
        for m in self._markets.values():
            for is_buy, keys, levels in ((True, m.bid_keys, m.bids), (False, m.ask_keys, m.asks)):
                side = "bid" if is_buy else "ask"
                if keys != sorted(set(keys)):
                    problems.append(f"{m.symbol}: {side} keys not strictly ascending")
                prices = sorted(k if is_buy else -k for k in keys)
                if prices != sorted(levels):
                    problems.append(f"{m.symbol}: {side} keys and levels differ")
                for p, lvl in levels.items():
                    orders = [o for o in lvl.orders if o.remaining]
                    if lvl.price != p or not orders or lvl.count != len(orders):
                        problems.append(f"{m.symbol}: {side} level {p} count {lvl.count} != {len(orders)} live")
                    if lvl.qty != sum(o.remaining for o in orders):
                        problems.append(f"{m.symbol}: {side} level {p} qty {lvl.qty} is not its orders' sum")
                    if [o.oid for o in orders] != sorted(o.oid for o in orders):
                        problems.append(f"{m.symbol}: {side} level {p} not in time priority")
                    for o in orders:
                        live.add(o.oid)
                        if o.market is not m or o.is_buy is not is_buy or o.price != p:
                            problems.append(f"order {o.oid} is on the wrong book, side or level")
                        if not 0 < o.remaining <= o.qty or not 0 < o.price <= m.max_ticks:
                            problems.append(f"order {o.oid}: remaining {o.remaining} of {o.qty}")
                        if o.reserved != self._reserve_for(o):
                            problems.append(f"order {o.oid}: reserves {o.reserved}, needs {self._reserve_for(o)}")
                        acct = self._accounts.get(o.user)
                        if acct is None or o.acct is not acct or acct.orders.get(o.oid) is not o:
                            problems.append(f"order {o.oid} is not indexed under its user {o.user!r}")
                            continue
                        if acct.coids.get(o.coid) != o.oid:
                            problems.append(f"order {o.oid}: client_order_id {o.coid!r} not indexed")
                        held[o.user][m.quote if is_buy else m.base] += o.reserved
            if m.bid_keys and m.ask_keys and m.bid_keys[-1] >= -m.ask_keys[-1]:
                problems.append(f"{m.symbol}: book crossed at rest")
            if not m.qtl or not m.bpl:
                problems.append(f"{m.symbol}: bad units")
        for user, acct in self._accounts.items():
            if set(acct.orders) - live:
                problems.append(f"{user}: indexes orders not on any book: {sorted(set(acct.orders) - live)}")
            if len(acct.coids) != len(acct.orders):
                problems.append(f"{user}: {len(acct.coids)} client ids for {len(acct.orders)} orders")
            for a in self._assets:
                if acct.avail[a] < 0 or acct.held[a] < 0:
                    problems.append(f"{user}: negative {a}: {acct.avail[a]} / {acct.held[a]}")
                if acct.held[a] != held[user][a]:
                    problems.append(f"{user}: reserved {a} {acct.held[a]} != open orders' {held[user][a]}")
        for a in self._assets:
            if self._fees.avail[a] < 0 or self._fees.held[a] != 0:
                problems.append(f"fee account: {a} {self._fees.avail[a]} / {self._fees.held[a]}")
        if live and max(live) >= self._next_oid:
            problems.append("an order id is not below the next order id")
        return problems

    # --- commands ------------------------------------------------------------------------

    def apply(self, cmd: Command) -> list[Event]:
        """Apply one command; return its events. Bad input is a Rejected event, never an exception."""
        t = type(cmd)
        if t is Place:
            return self._place(cmd)  # type: ignore[arg-type]
        if t is Cancel:
            return self._cancel(cmd)  # type: ignore[arg-type]
        if t is CancelAll:
            return self._cancel_all(cmd)  # type: ignore[arg-type]
        if t is Fund:
            return self._fund(cmd)  # type: ignore[arg-type]
        return [self._sys_reject(cmd, "", "bad_command", f"not a command: {type(cmd).__name__}")]

    # rejections -----------------------------------------------------------------------------

    def _reject(self, m: _Market, ts: int, user: str, ident: str, code: str, reason: str) -> list[Event]:
        m.seq += 1
        return [Rejected(m.seq, ts, m.symbol, user, ident, reason, code)]

    def _sys_reject(self, cmd: object, ident: object, code: str, reason: str) -> Rejected:
        """A rejection on ACCOUNTS, for Fund and for commands with no usable market (or malformed)."""
        ts = getattr(cmd, "ts", 0)
        user = getattr(cmd, "user", "")
        self._accounts_seq += 1
        return Rejected(
            self._accounts_seq,
            ts if type(ts) is int else 0,
            ACCOUNTS,
            user if type(user) is str else "",
            ident if type(ident) is str else "",
            reason,
            code,
        )

    def _malformed(self, cmd: object, fields: Sequence[tuple[str, type]]) -> str | None:
        for name, typ in fields:
            value = getattr(cmd, name, None)
            if type(value) is not typ:
                return f"malformed command: {name} must be a {typ.__name__}, not {type(value).__name__}"
        return None

    def _bad_user(self, user: str) -> str | None:
        if not user or len(user) > MAX_NAME:
            return f"user must be a name of 1 to {MAX_NAME} characters"
        if user == FEE_ACCOUNT:
            return f"user {user!r} is reserved"
        return None

    def _early_reject(self, cmd: Place | Cancel | CancelAll, ident_field: str) -> list[Event]:
        """The rejection of a command with an unknown market or a field of the wrong type."""
        ident = getattr(cmd, ident_field, "")
        market = cmd.market
        m = self._markets.get(market) if type(market) is str else None
        if m is None:
            return [
                self._sys_reject(
                    cmd, ident, "unknown_market", f"unknown market {show(market)}: known markets are {self._known}"
                )
            ]
        problem = self._malformed(cmd, (("user", str), (ident_field, str), ("ts", int))) or "malformed command"
        return [self._sys_reject(cmd, ident, "bad_command", problem)]

    # place ------------------------------------------------------------------------------

    def _place(self, c: Place) -> list[Event]:
        market, user, coid, ts = c.market, c.user, c.client_order_id, c.ts
        if type(market) is not str or type(user) is not str or type(coid) is not str or type(ts) is not int:
            return self._early_reject(c, "client_order_id")
        m = self._markets.get(market)
        if m is None:
            return self._early_reject(c, "client_order_id")
        acct = self._accounts.get(user)
        if acct is None:
            bad = self._bad_user(user)
            if bad:
                return self._reject(m, ts, user, coid, "bad_user", bad)
        if not coid or len(coid) > MAX_NAME:
            return self._reject(
                m, ts, user, coid, "bad_client_order_id", f"client_order_id must be 1 to {MAX_NAME} characters"
            )
        side, typ, tif, post_only, ptext = c.side, c.type, c.tif, c.post_only, c.price
        if side == "buy":
            is_buy = True
        elif side == "sell":
            is_buy = False
        else:
            return self._reject(m, ts, user, coid, "bad_side", f"side must be buy or sell, not {show(side)}")
        if typ == "limit":
            is_limit = True
        elif typ == "market":
            is_limit = False
        else:
            return self._reject(m, ts, user, coid, "bad_type", f"order type must be limit or market, not {show(typ)}")
        if tif not in _TIFS:
            return self._reject(m, ts, user, coid, "bad_tif", f"time in force must be gtc, ioc or fok, not {show(tif)}")
        if post_only is not False and post_only is not True:
            return self._reject(m, ts, user, coid, "bad_post_only", "post_only must be true or false")
        if is_limit:
            if ptext is None:
                return self._reject(m, ts, user, coid, "price_required", "a limit order needs a price")
            if post_only and tif != "gtc":
                return self._reject(
                    m, ts, user, coid, "post_only_tif", f"a post-only order must be gtc: as {tif} it could never rest"
                )
        elif ptext is not None:
            return self._reject(m, ts, user, coid, "price_not_allowed", _MARKET_PRICE)
        elif post_only:
            return self._reject(m, ts, user, coid, "post_only_market", _MARKET_POST_ONLY)
        qtext = c.qty
        lots = m.qty_cache.get(qtext) if type(qtext) is str else None
        if lots is None:
            lots, err = m.parse_qty(qtext)
            if err is not None:
                return self._reject(m, ts, user, coid, *err)
        ticks = 0
        if is_limit:
            ticks = m.price_cache.get(ptext) if type(ptext) is str else None  # type: ignore[assignment]
            if ticks is None:
                ticks, err = m.parse_price(ptext)  # type: ignore[assignment]
                if err is not None:
                    return self._reject(m, ts, user, coid, *err)
        if acct is not None and coid in acct.coids:
            return self._reject(
                m,
                ts,
                user,
                coid,
                "duplicate_client_order_id",
                f"client_order_id {show(coid)} is already used by your open order {acct.coids[coid]}",
            )

        # Funds (and, for market orders, liquidity). ``want`` is where matching stops; a market
        # order that cannot fill one lot is rejected here, before it gets an id.
        want = lots
        remainder = "no_liquidity"  # why a market order's remainder is cancelled (IOC: "ioc")
        if is_buy:
            have = acct.avail[m.quote] if acct is not None else 0
            if is_limit:
                cost = ticks * lots * m.qtl
                if cost + cost * self._rb // BPS > have:
                    return self._reject(m, ts, user, coid, "funds", self._funds_reason(m, cost, have))
            else:
                fillable, cost, funds_limited = self._walk_market_buy(m, acct, lots, have)
                if fillable == 0:
                    return self._reject(m, ts, user, coid, *self._market_buy_refusal(m, acct, have))
                if funds_limited:
                    # Stop where the money runs out; otherwise match on like any order (the book
                    # runs out, and the buyer's own asks on the way are cancelled as self-trades).
                    want, remainder = fillable, "funds"
                if tif == "fok" and fillable < lots:
                    want = 0
        else:
            have = acct.avail[m.base] if acct is not None else 0
            if lots * m.bpl > have:
                return self._reject(m, ts, user, coid, "funds", self._funds_reason(m, 0, have, lots * m.bpl))
            if not is_limit:
                fillable = self._available(m, False, acct, lots, 0)  # type: ignore[arg-type]
                if fillable == 0:
                    return self._reject(
                        m, ts, user, coid, "no_liquidity", f"no buy orders in {m.symbol} to sell to (other than yours)"
                    )
                if tif == "fok" and fillable < lots:
                    want = 0
        assert acct is not None  # every accepted order needs funds, hence an account

        # Accepted. The taker's reservation is settled in one step after matching: what it spent,
        # plus, if it rests, exactly what its remainder may cost (the same end state as holding
        # the full reservation first and releasing the excess, without the churn).
        oid = self._next_oid
        self._next_oid = oid + 1
        seq = m.seq = m.seq + 1
        events: list[Event] = [
            Accepted(
                seq, ts, m.symbol, user, oid, coid, side, typ, tif, post_only,
                m.qstr.get(lots) or m.fmt_qty(lots),
                (m.pstr.get(ticks) or m.fmt_price(ticks)) if is_limit else None,
            )
        ]  # fmt: skip
        if is_limit:
            if post_only:
                if (m.ask_keys and -m.ask_keys[-1] <= ticks) if is_buy else (m.bid_keys and m.bid_keys[-1] >= ticks):
                    want, remainder = 0, "post_only"
            elif tif == "fok" and self._available(m, is_buy, acct, lots, ticks) < lots:
                want = 0
            limit = ticks
        else:
            limit = m.max_ticks if is_buy else 0
        if want == 0:  # FOK that cannot fill completely, post-only that would cross: nothing trades
            remainder = "fok" if tif == "fok" else remainder
            m.seq += 1
            events.append(Cancelled(m.seq, ts, m.symbol, user, oid, coid, events[0].qty, remainder))  # type: ignore[union-attr,arg-type]
            return events

        avail = acct.avail
        rests = is_limit and tif == "gtc"  # only limit GTC orders rest
        base, quote = m.base, m.quote
        if is_buy:
            keys = m.ask_keys
            if keys and -keys[-1] <= limit:
                rem, paid, taker_fees, maker_fees = self._take_buy(m, acct, oid, coid, lots, want, limit, ts, events)
                if rem < lots:
                    avail[base] += (lots - rem) * m.bpl
                    self._fees.avail[quote] += taker_fees + maker_fees
                    avail[quote] -= paid + taker_fees
            else:
                rem = lots
            if rem and rests:
                keep = ticks * rem * m.qtl
                keep += keep * self._rb // BPS
                avail[quote] -= keep
                acct.held[quote] += keep
                self._rest(_Order(oid, acct, coid, m, True, ticks, lots, rem, post_only, ts, keep))
        else:
            keys = m.bid_keys
            if keys and keys[-1] >= limit:
                rem, paid, taker_fees, maker_fees = self._take_sell(m, acct, oid, coid, lots, want, limit, ts, events)
                if rem < lots:
                    avail[base] -= (lots - rem) * m.bpl
                    avail[quote] += paid - taker_fees
                    self._fees.avail[quote] += taker_fees + maker_fees
            else:
                rem = lots
            if rem and rests:
                keep = rem * m.bpl
                avail[base] -= keep
                acct.held[base] += keep
                self._rest(_Order(oid, acct, coid, m, False, ticks, lots, rem, post_only, ts, keep))
        if rem and not rests:
            if is_limit:
                remainder = "ioc"
            m.seq += 1
            events.append(Cancelled(m.seq, ts, m.symbol, user, oid, coid, m.fmt_qty(rem), remainder))  # type: ignore[arg-type]
        return events

    def _funds_reason(self, m: _Market, cost: int, have: int, base_units: int = 0) -> str:
        if base_units:
            b = m.base
            need, avail = fmt_amount(base_units), fmt_amount(have)
            return f"insufficient {b}: the order needs {need} {b} but {avail} {b} is available"
        q = m.quote
        fee = cost * self._rb // BPS
        fee_part = f" plus up to {fmt_amount(fee)} {q} fee" if fee else ""
        return (
            f"insufficient {q}: the order needs {fmt_amount(cost + fee)} {q} ({fmt_amount(cost)} {q} at its limit"
            f" price{fee_part}) but {fmt_amount(have)} {q} is available"
        )

    def _available(self, m: _Market, taker_buys: bool, acct: _Account, want: int, limit: int) -> int:
        """Lots the book would fill for ``acct`` up to ``want``, within ``limit``, not counting its own orders."""
        keys, levels = (m.ask_keys, m.asks) if taker_buys else (m.bid_keys, m.bids)
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

    def _walk_market_buy(self, m: _Market, acct: _Account | None, want: int, budget: int) -> tuple[int, int, bool]:
        """``(lots, cost, funds_limited)``: what a market buy of ``want`` lots can fill, best ask first,
        skipping the buyer's own asks, while cost + taker fee stays within ``budget`` quote units."""
        tb = self._tb
        keys, levels, qtl = m.ask_keys, m.asks, m.qtl
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

    def _market_buy_refusal(self, m: _Market, acct: _Account | None, have: int) -> tuple[str, str]:
        best = next(
            (-k for k in reversed(m.ask_keys) if any(o.remaining and o.acct is not acct for o in m.asks[-k].orders)),
            None,
        )
        if best is None:
            return "no_liquidity", f"no sell orders in {m.symbol} to buy from (other than yours)"
        cost = best * m.qtl
        need = cost + cost * self._tb // BPS
        q = m.quote
        return "funds", (
            f"insufficient {q}: one lot ({m.fmt_qty(1)} {m.base}) at the best ask {m.fmt_price(best)} needs"
            f" {fmt_amount(need)} {q} with the taker fee, but {fmt_amount(have)} {q} is available"
        )

    def _fee_text(self, units: int) -> str:
        s = fmt_amount(units)
        if len(self._fee_str) >= _CACHE_MAX:
            self._fee_str.clear()
            self._fee_str[0] = "0"
        self._fee_str[units] = s
        return s

    # The two matching loops below are the hot path: they are written out per side, with
    # attributes in locals, and settle each maker as they go; the taker's totals are returned
    # (remaining lots, quote notional, taker fees, maker fees) and settled once by the caller.

    def _take_buy(
        self,
        m: _Market,
        acct: _Account,
        oid: int,
        coid: str,
        rem: int,
        want: int,
        limit: int,
        ts: int,
        events: list[Event],
    ) -> tuple[int, int, int, int]:
        """An incoming buy takes the asks, best first, up to ``want`` lots at prices up to ``limit``."""
        keys, levels = m.ask_keys, m.asks
        base, quote, qtl, bpl, tb, mb = m.base, m.quote, m.qtl, m.bpl, self._tb, self._mb
        qstr, pstr, fstr, sym, user = m.qstr, m.pstr, self._fee_str, m.symbol, acct.user
        paid = taker_fees = maker_fees = 0
        while want and keys:
            p = -keys[-1]
            if p > limit:
                break
            lvl = levels[p]
            q = lvl.orders
            ps = pstr.get(p) or m.fmt_price(p)
            unit = p * qtl
            while want:
                mo = q[0]
                mrem = mo.remaining
                if not mrem:  # cancelled earlier, still queued
                    q.popleft()
                    continue
                mk = mo.acct
                if mk is acct:
                    self._self_trade(m, mo, lvl, ts, events)
                    q.popleft()
                    if not lvl.count:
                        break
                    continue
                n = want if want < mrem else mrem
                notional = unit * n
                tf = notional * tb // BPS
                mf = notional * mb // BPS
                b = n * bpl
                mk.held[base] -= b
                mo.reserved -= b
                mk.avail[quote] += notional - mf
                paid += notional
                taker_fees += tf
                maker_fees += mf
                want -= n
                rem -= n
                mrem -= n
                mo.remaining = mrem
                lvl.qty -= n
                m.last = p
                tid = self._next_tid
                self._next_tid = tid + 1
                m.seq += 1
                events.append(
                    Trade(
                        m.seq, ts, sym, tid, ps, qstr.get(n) or m.fmt_qty(n), "buy",
                        mo.user, mo.oid, mo.coid, qstr.get(mrem) or m.fmt_qty(mrem), fstr.get(mf) or self._fee_text(mf),
                        user, oid, coid, qstr.get(rem) or m.fmt_qty(rem), fstr.get(tf) or self._fee_text(tf),
                    )
                )  # fmt: skip
                if not mrem:
                    q.popleft()
                    lvl.count -= 1
                    del mk.orders[mo.oid]
                    del mk.coids[mo.coid]
                    if not lvl.count:
                        break
            if not lvl.count:
                keys.pop()
                del levels[p]
        return rem, paid, taker_fees, maker_fees

    def _take_sell(
        self,
        m: _Market,
        acct: _Account,
        oid: int,
        coid: str,
        rem: int,
        want: int,
        limit: int,
        ts: int,
        events: list[Event],
    ) -> tuple[int, int, int, int]:
        """An incoming sell takes the bids, best first, up to ``want`` lots at prices down to ``limit``."""
        keys, levels = m.bid_keys, m.bids
        base, quote, qtl, bpl, tb, mb, rb = m.base, m.quote, m.qtl, m.bpl, self._tb, self._mb, self._rb
        qstr, pstr, fstr, sym, user = m.qstr, m.pstr, self._fee_str, m.symbol, acct.user
        paid = taker_fees = maker_fees = 0
        while want and keys:
            p = keys[-1]
            if p < limit:
                break
            lvl = levels[p]
            q = lvl.orders
            ps = pstr.get(p) or m.fmt_price(p)
            unit = p * qtl
            while want:
                mo = q[0]
                mrem = mo.remaining
                if not mrem:  # cancelled earlier, still queued
                    q.popleft()
                    continue
                mk = mo.acct
                if mk is acct:
                    self._self_trade(m, mo, lvl, ts, events)
                    q.popleft()
                    if not lvl.count:
                        break
                    continue
                n = want if want < mrem else mrem
                notional = unit * n
                tf = notional * tb // BPS
                mf = notional * mb // BPS
                mrem -= n
                # The resting buy keeps exactly what its remaining lots may cost; the rest of what
                # it held pays for this fill (notional + maker fee) and any excess is freed.
                if mrem:
                    keep = unit * mrem
                    keep += keep * rb // BPS
                else:
                    keep = 0
                freed = mo.reserved - keep
                mo.reserved = keep
                mk.held[quote] -= freed
                mk_avail = mk.avail
                mk_avail[quote] += freed - notional - mf
                mk_avail[base] += n * bpl
                paid += notional
                taker_fees += tf
                maker_fees += mf
                want -= n
                rem -= n
                mo.remaining = mrem
                lvl.qty -= n
                m.last = p
                tid = self._next_tid
                self._next_tid = tid + 1
                m.seq += 1
                events.append(
                    Trade(
                        m.seq, ts, sym, tid, ps, qstr.get(n) or m.fmt_qty(n), "sell",
                        mo.user, mo.oid, mo.coid, qstr.get(mrem) or m.fmt_qty(mrem), fstr.get(mf) or self._fee_text(mf),
                        user, oid, coid, qstr.get(rem) or m.fmt_qty(rem), fstr.get(tf) or self._fee_text(tf),
                    )
                )  # fmt: skip
                if not mrem:
                    q.popleft()
                    lvl.count -= 1
                    del mk.orders[mo.oid]
                    del mk.coids[mo.coid]
                    if not lvl.count:
                        break
            if not lvl.count:
                keys.pop()
                del levels[p]
        return rem, paid, taker_fees, maker_fees

    def _self_trade(self, m: _Market, mo: _Order, lvl: _Level, ts: int, events: list[Event]) -> None:
        """Cancel a resting order the incoming order of its own user reached (the caller pops it)."""
        rem = mo.remaining
        m.seq += 1
        events.append(Cancelled(m.seq, ts, m.symbol, mo.user, mo.oid, mo.coid, m.fmt_qty(rem), "self_trade"))
        lvl.count -= 1
        lvl.qty -= rem
        mo.remaining = 0
        self._release(mo)

    @staticmethod
    def _release(o: _Order) -> None:
        """Free what a resting order holds and forget it: it is no longer open."""
        acct = o.acct
        if o.reserved:
            asset = o.market.quote if o.is_buy else o.market.base
            acct.held[asset] -= o.reserved
            acct.avail[asset] += o.reserved
            o.reserved = 0
        del acct.orders[o.oid]
        del acct.coids[o.coid]

    @staticmethod
    def _rest(o: _Order) -> None:
        m = o.market
        if o.is_buy:
            levels, keys, key = m.bids, m.bid_keys, o.price
        else:
            levels, keys, key = m.asks, m.ask_keys, -o.price
        lvl = levels.get(o.price)
        if lvl is None:
            lvl = levels[o.price] = _Level(o.price)
            insort(keys, key)
        lvl.orders.append(o)
        lvl.count += 1
        lvl.qty += o.remaining
        o.acct.orders[o.oid] = o
        o.acct.coids[o.coid] = o.oid

    def _unbook(self, o: _Order, reason: str, ts: int, events: list[Event]) -> None:
        """Cancel a resting order: Cancelled event, level bookkeeping, reservation released."""
        m = o.market
        rem = o.remaining
        m.seq += 1
        events.append(Cancelled(m.seq, ts, m.symbol, o.user, o.oid, o.coid, m.fmt_qty(rem), reason))  # type: ignore[arg-type]
        if o.is_buy:
            levels, keys, key = m.bids, m.bid_keys, o.price
        else:
            levels, keys, key = m.asks, m.ask_keys, -o.price
        lvl = levels[o.price]
        lvl.count -= 1
        lvl.qty -= rem
        o.remaining = 0
        if not lvl.count:
            del levels[o.price]
            del keys[bisect_left(keys, key)]
        elif len(lvl.orders) > 2 * lvl.count + 16:
            lvl.orders = deque(x for x in lvl.orders if x.remaining)
        self._release(o)

    # cancel -----------------------------------------------------------------------------

    def _cancel(self, c: Cancel) -> list[Event]:
        user, rid, ts, oid = c.user, c.request_id, c.ts, c.order_id
        m = self._markets.get(c.market) if type(c.market) is str else None
        if m is None or type(user) is not str or type(rid) is not str or type(ts) is not int:
            return self._early_reject(c, "request_id")
        acct = self._accounts.get(user)
        o = acct.orders.get(oid) if acct is not None and type(oid) is int else None
        if o is None or o.market is not m:
            shown = oid if type(oid) is int else show(oid)
            return self._reject(
                m,
                ts,
                user,
                rid,
                "unknown_order",
                f"unknown order {shown}: you have no open order with that id in {m.symbol}",
            )
        events: list[Event] = []
        self._unbook(o, "user", ts, events)
        return events

    def _cancel_all(self, c: CancelAll) -> list[Event]:
        user, rid, ts = c.user, c.request_id, c.ts
        m = self._markets.get(c.market) if type(c.market) is str else None
        if m is None or type(user) is not str or type(rid) is not str or type(ts) is not int:
            return self._early_reject(c, "request_id")
        acct = self._accounts.get(user)
        mine = [o for o in acct.orders.values() if o.market is m] if acct is not None else []
        if not mine:
            return self._reject(m, ts, user, rid, "no_open_orders", f"you have no open orders in {m.symbol} to cancel")
        events: list[Event] = []
        for o in mine:
            self._unbook(o, "user", ts, events)
        return events

    # fund -------------------------------------------------------------------------------

    def _fund(self, c: Fund) -> list[Event]:
        user, rid, ts, amounts = c.user, c.request_id, c.ts, c.amounts
        problem = self._malformed(c, (("user", str), ("request_id", str), ("ts", int), ("amounts", dict)))
        if problem:
            return [self._sys_reject(c, rid, "bad_command", problem)]
        bad = self._bad_user(user)
        if bad:
            return [self._sys_reject(c, rid, "bad_user", bad)]
        if user in self._accounts:
            return [
                self._sys_reject(
                    c,
                    rid,
                    "already_funded",
                    f"user {user!r} is already funded; an account is funded once",
                )
            ]
        if not amounts:
            return [self._sys_reject(c, rid, "bad_amount", "nothing to fund: amounts is empty")]
        credits: dict[str, int] = {}
        for asset, text in amounts.items():
            if type(asset) is not str or asset not in self._fees.avail:
                return [
                    self._sys_reject(
                        c,
                        rid,
                        "unknown_asset",
                        f"unknown asset {show(asset)}: known assets are {', '.join(self._assets)}",
                    )
                ]
            parsed = parse_decimal(text)
            units = asset_units(*parsed) if parsed is not None else None
            if units is None or units <= 0 or units > MAX_FUND_UNITS:
                return [
                    self._sys_reject(
                        c,
                        rid,
                        "bad_amount",
                        f"amount {show(text)} of {asset} must be a plain decimal above zero, at most"
                        f" {fmt_amount(MAX_FUND_UNITS)}, with at most {ASSET_DP} decimals",
                    )
                ]
            credits[asset] = units
        acct = self._accounts[user] = _Account(user, self._assets)
        for asset in sorted(credits):
            acct.avail[asset] += credits[asset]
        self._accounts_seq += 1
        return [Funded(self._accounts_seq, ts, ACCOUNTS, user, {a: fmt_amount(credits[a]) for a in sorted(credits)})]

    # --- snapshot ------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The exact state as JSON bytes: restore() of them continues with the same events."""

        def orders(keys: list[int], levels: dict[int, _Level], sign: int) -> list[_SnapOrder]:
            out = []
            for k in reversed(keys):
                for o in levels[k * sign].orders:
                    if o.remaining:
                        out.append(
                            _SnapOrder(
                                o.oid, o.user, o.coid, o.price, o.qty, o.remaining, o.post_only, o.ts, o.reserved
                            )
                        )
            return out

        def account(a: _Account) -> _SnapAccount:
            return _SnapAccount(a.user, dict(a.avail), dict(a.held))

        snap = _Snapshot(
            version=SNAPSHOT_VERSION,
            markets=list(self.markets),
            taker_fee_bps=self._tb,
            maker_fee_bps=self._mb,
            next_order_id=self._next_oid,
            next_trade_id=self._next_tid,
            accounts_seq=self._accounts_seq,
            books=[
                _SnapBook(m.symbol, m.seq, m.last, orders(m.bid_keys, m.bids, 1), orders(m.ask_keys, m.asks, -1))
                for m in self._markets.values()
            ],
            fees=account(self._fees),
            accounts=[account(a) for a in self._accounts.values()],
        )
        return _snap_encode(snap)

    @classmethod
    def restore(cls, data: bytes) -> Exchange:
        """The exchange a snapshot describes. Raises ValueError if the data is not a consistent snapshot."""
        try:
            snap = _snap_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not an exchange snapshot: {exc}") from None
        if snap.version != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {snap.version} is not {SNAPSHOT_VERSION}")
        ex = cls(snap.markets, snap.taker_fee_bps, snap.maker_fee_bps)
        ex._next_oid = snap.next_order_id
        ex._next_tid = snap.next_trade_id
        ex._accounts_seq = snap.accounts_seq

        def load(acct: _Account, s: _SnapAccount) -> None:
            if set(s.avail) != set(ex._assets) or set(s.held) != set(ex._assets):
                raise ValueError(f"snapshot account {s.user!r} does not list exactly the assets {ex._assets}")
            acct.avail.update(s.avail)
            acct.held.update(s.held)

        load(ex._fees, snap.fees)
        for s in snap.accounts:
            if s.user in ex._accounts or ex._bad_user(s.user):
                raise ValueError(f"snapshot has a bad or repeated account {s.user!r}")
            load(ex._accounts.setdefault(s.user, _Account(s.user, ex._assets)), s)
        if [b.symbol for b in snap.books] != list(ex._markets):
            raise ValueError("snapshot books do not match its markets")
        every: list[_Order] = []
        for b in snap.books:
            m = ex._markets[b.symbol]
            m.seq, m.last = b.seq, b.last_trade
            for want_buy, rows in ((True, b.bids), (False, b.asks)):
                for r in rows:
                    acct = ex._accounts.get(r.user)
                    if acct is None:
                        raise ValueError(f"snapshot order {r.oid} belongs to no account")
                    o = _Order(
                        r.oid, acct, r.coid, m, want_buy, r.price, r.qty, r.remaining, r.post_only, r.ts, r.reserved
                    )
                    levels, keys, key = (m.bids, m.bid_keys, o.price) if want_buy else (m.asks, m.ask_keys, -o.price)
                    lvl = levels.get(o.price)
                    if lvl is None:
                        lvl = levels[o.price] = _Level(o.price)
                        insort(keys, key)
                    lvl.orders.append(o)
                    lvl.count += 1
                    lvl.qty += o.remaining
                    every.append(o)
        for o in sorted(every, key=lambda o: o.oid):
            if o.oid in o.acct.orders or o.coid in o.acct.coids:
                raise ValueError(f"snapshot order {o.oid} repeats an order id or client_order_id")
            o.acct.orders[o.oid] = o
            o.acct.coids[o.coid] = o.oid
        problems = ex.audit()
        if problems:
            raise ValueError("inconsistent snapshot: " + "; ".join(problems[:5]))
        return ex


__all__ = [
    "ACCOUNTS",
    "FEE_ACCOUNT",
    "BookView",
    "Exchange",
    "OrderView",
    "UnknownMarket",
]
