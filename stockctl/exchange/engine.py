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

from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Sequence
from heapq import heappop, heappush

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
    OrderType,
    Place,
    Rejected,
    Side,
    Time,
    TimeInForce,
    Trade,
    Triggered,
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
SNAPSHOT_VERSION = 2
"""2 adds pending stops, iceberg display and good-till-date expiry; version 1 snapshots still restore."""
_CACHE_MAX = 1 << 16
_TIFS = ("gtc", "ioc", "fok", "gtd")
_TYPES = ("limit", "market", "stop", "stop_limit")
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
    status: str = "open"  # "pending": a stop not triggered yet (not in the book)
    stop_price: str | None = None
    expire_at: int | None = None
    display_qty: str | None = None  # an iceberg: the book shows at most this much of it
    visible: str | None = None  # what the book shows of it now (icebergs only)


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


class _Level:
    """One price of one side: orders in time priority. Cancelled orders stay in the deque as dead
    entries (remaining 0) until they reach the front or the deque is compacted; ``count`` and
    ``qty`` cover live orders only, and a level with no live order is removed from the book.
    ``qty`` is everything that can fill there, icebergs' hidden parts included; ``hidden`` is the
    part the book does not show (so depth is ``qty - hidden``)."""

    __slots__ = ("count", "hidden", "orders", "price", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[_Order] = deque()
        self.count = 0
        self.qty = 0
        self.hidden = 0


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
        "px",
        "qstr",
        "qtl",
        "qty_cache",
        "quote",
        "seq",
        "spec",
        "stop_buys",
        "stop_sells",
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
        # Pending stops, sorted by (stop price, time priority); each entry is (stop, prio, order).
        self.stop_buys: list[tuple[int, int, _Order]] = []
        self.stop_sells: list[tuple[int, int, _Order]] = []
        self.px: list[int] = []  # trade prices of the command being applied, while stops are pending
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
    # Version 2 (a version 1 snapshot's shorter rows decode with these defaults):
    kind: str = "limit"
    tif: str = "gtc"
    stop: int = 0
    expire: int = 0
    display: int = 0
    visible: int = 0


class _SnapBook(msgspec.Struct):
    symbol: str
    seq: int
    last_trade: int | None
    bids: list[_SnapOrder]  # best level first, time priority within a level
    asks: list[_SnapOrder]
    stop_buys: list[_SnapOrder] = []  # pending stops in trigger order (stop price, then time)
    stop_sells: list[_SnapOrder] = []


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
        "_gtd",
        "_known",
        "_markets",
        "_mb",
        "_next_oid",
        "_next_prio",
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
        self._next_prio = 1  # time priority counter (internal: never in events or snapshots)
        self._gtd: list[tuple[int, int, _Account]] = []  # heap of (expire_at, order id, owner); stale entries skipped
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
        """The user's open orders (in one market, or all), oldest first: resting ones (the whole
        order, an iceberg's hidden part included) and pending stops (``status`` "pending")."""
        m = None if market is None else self._market(market)
        acct = self._accounts.get(user)
        if acct is None:
            return []
        mine = sorted((o for o in acct.orders.values() if m is None or o.market is m), key=lambda o: o.oid)
        return [self._view(o) for o in mine]

    @staticmethod
    def _view(o: _Order) -> OrderView:
        m = o.market
        return OrderView(
            order_id=o.oid,
            client_order_id=o.coid,
            market=m.symbol,
            side="buy" if o.is_buy else "sell",
            type=o.kind,  # type: ignore[arg-type]
            price=m.fmt_price(o.price) if o.price else None,
            qty=m.fmt_qty(o.qty),
            remaining=m.fmt_qty(o.remaining),
            tif=o.tif,  # type: ignore[arg-type]
            post_only=o.post_only,
            ts=o.ts,
            status="pending" if o.pending else "open",
            stop_price=m.fmt_price(o.stop) if o.stop else None,
            expire_at=o.expire or None,
            display_qty=m.fmt_qty(o.display) if o.display else None,
            visible=m.fmt_qty(o.visible) if o.display and not o.pending else None,
        )

    def next_expiry(self) -> int | None:
        """The earliest ``expire_at`` (ns) of an open good-till-date order, or None: a command with
        a ``ts`` at or past it expires that order (it may be stale: then that command expires nothing)."""
        return self._gtd[0][0] if self._gtd else None

    def book(self, market: str, depth: int = 20) -> BookView:
        """Depth of one market, best level first; ``seq`` is the market's last event seq."""
        m = self._market(market)
        n = max(0, depth)
        # Only what is displayed: an iceberg's hidden part is not depth anyone can see.
        bids = [
            (m.fmt_price(k), m.fmt_qty(lv.qty - lv.hidden), lv.count)
            for k in m.bid_keys[::-1][:n]
            for lv in (m.bids[k],)
        ]
        asks = [
            (m.fmt_price(-k), m.fmt_qty(lv.qty - lv.hidden), lv.count)
            for k in m.ask_keys[::-1][:n]
            for lv in (m.asks[-k],)
        ]
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
                    if lvl.hidden != sum(o.remaining - o.visible for o in orders):
                        problems.append(f"{m.symbol}: {side} level {p} hidden {lvl.hidden} is not its icebergs' sum")
                    if [o.prio for o in orders] != sorted(o.prio for o in orders):
                        problems.append(f"{m.symbol}: {side} level {p} not in time priority")
                    for o in orders:
                        live.add(o.oid)
                        if o.market is not m or o.is_buy is not is_buy or o.price != p or o.pending:
                            problems.append(f"order {o.oid} is on the wrong book, side or level")
                        # A plain order shows all of itself; an iceberg at most display_qty of it.
                        if not (
                            0 < o.visible <= min(o.display, o.remaining) if o.display else o.visible == o.remaining
                        ):
                            problems.append(f"order {o.oid}: shows {o.visible} of {o.remaining}")
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
            for is_buy, stops in ((True, m.stop_buys), (False, m.stop_sells)):
                if [(s, p) for s, p, _ in stops] != sorted({(s, p) for s, p, _ in stops}):
                    problems.append(f"{m.symbol}: stops not sorted")
                for s, _, o in stops:
                    live.add(o.oid)
                    acct = self._accounts.get(o.user)
                    if not o.pending or o.stop != s or o.is_buy is not is_buy or o.market is not m:
                        problems.append(f"stop {o.oid} is on the wrong list")
                    if m.last is not None and ((m.last >= s) if is_buy else (m.last <= s)):
                        problems.append(f"stop {o.oid} at {s} should have triggered at {m.last}")
                    if o.reserved != self._reserve_for(o) or o.remaining != o.qty:
                        problems.append(f"stop {o.oid}: reserves {o.reserved}, needs {self._reserve_for(o)}")
                    if acct is None or acct.orders.get(o.oid) is not o or acct.coids.get(o.coid) != o.oid:
                        problems.append(f"stop {o.oid} is not indexed under its user {o.user!r}")
                        continue
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
        """Apply one command; return its events. Bad input is a Rejected event, never an exception.

        First, every good-till-date order due by the command's ``ts`` expires (``Cancelled``
        ``expired``, in any market), then the command itself is applied."""
        gtd = self._gtd
        if gtd:
            ts = getattr(cmd, "ts", None)
            if type(ts) is int and gtd[0][0] <= ts:
                expired = self._expire(ts)
                return expired + self._dispatch(cmd) if expired else self._dispatch(cmd)
        return self._dispatch(cmd)

    def _dispatch(self, cmd: Command) -> list[Event]:
        t = type(cmd)
        if t is Place:
            return self._place(cmd)  # type: ignore[arg-type]
        if t is Cancel:
            return self._cancel(cmd)  # type: ignore[arg-type]
        if t is CancelAll:
            return self._cancel_all(cmd)  # type: ignore[arg-type]
        if t is Fund:
            return self._fund(cmd)  # type: ignore[arg-type]
        if t is Amend:
            return self._amend(cmd)  # type: ignore[arg-type]
        if t is Time:
            if type(cmd.ts) is not int:  # type: ignore[union-attr]
                return [self._sys_reject(cmd, "", "bad_command", "malformed command: ts must be an int")]
            return []  # its work, the expiry, is done: a time with nothing due says nothing
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

    def _early_reject(self, cmd: Place | Cancel | CancelAll | Amend, ident_field: str) -> list[Event]:
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
        stext, expire, dtext = c.stop_price, c.expire_at, c.display_qty
        if side == "buy":
            is_buy = True
        elif side == "sell":
            is_buy = False
        else:
            return self._reject(m, ts, user, coid, "bad_side", f"side must be buy or sell, not {show(side)}")
        if typ not in _TYPES:
            return self._reject(
                m, ts, user, coid, "bad_type", f"order type must be limit, market, stop or stop_limit, not {show(typ)}"
            )
        is_stop = typ == "stop" or typ == "stop_limit"
        is_limit = typ == "limit" or typ == "stop_limit"  # has a limit price (a stop buy's price is its cap)
        if tif not in _TIFS:
            return self._reject(
                m, ts, user, coid, "bad_tif", f"time in force must be gtc, ioc, fok or gtd, not {show(tif)}"
            )
        if post_only is not False and post_only is not True:
            return self._reject(m, ts, user, coid, "bad_post_only", "post_only must be true or false")
        if is_limit:
            if ptext is None:
                return self._reject(m, ts, user, coid, "price_required", f"a {typ} order needs a price")
            if post_only and tif not in ("gtc", "gtd"):
                return self._reject(
                    m,
                    ts,
                    user,
                    coid,
                    "post_only_tif",
                    f"a post-only order must be gtc or gtd: as {tif} it could never rest",
                )
        elif post_only:
            return self._reject(m, ts, user, coid, "post_only_market", _MARKET_POST_ONLY)
        elif typ == "stop" and is_buy:
            if ptext is None:
                return self._reject(
                    m, ts, user, coid, "price_required",
                    "a stop buy needs a price: the most it may pay once triggered (its protection cap, and what"
                    " it reserves)",
                )  # fmt: skip
        elif ptext is not None:
            return self._reject(m, ts, user, coid, "price_not_allowed", _MARKET_PRICE)
        if is_stop:
            if stext is None:
                return self._reject(m, ts, user, coid, "stop_price_required", f"a {typ} order needs a stop_price")
        elif stext is not None:
            return self._reject(m, ts, user, coid, "stop_price_not_allowed", "stop_price needs type stop or stop_limit")
        if tif == "gtd":
            if typ == "market":
                return self._reject(m, ts, user, coid, "bad_tif", "a market order cannot be gtd: it never rests")
            if type(expire) is not int or expire <= 0:
                return self._reject(
                    m, ts, user, coid, "bad_expire_at", "a gtd order needs expire_at (a time: epoch nanoseconds)"
                )
            if expire <= ts:
                return self._reject(
                    m, ts, user, coid, "expire_in_past", f"expire_at {expire} is not after the order's time {ts}"
                )
        elif expire is not None:
            return self._reject(m, ts, user, coid, "bad_expire_at", "expire_at needs tif gtd")
        else:
            expire = 0
        qtext = c.qty
        lots = m.qty_cache.get(qtext) if type(qtext) is str else None
        if lots is None:
            lots, err = m.parse_qty(qtext)
            if err is not None:
                return self._reject(m, ts, user, coid, *err)
        display = 0
        if dtext is not None:
            if typ != "limit" or tif not in ("gtc", "gtd"):
                return self._reject(
                    m, ts, user, coid, "display_not_allowed", "display_qty (an iceberg) needs a limit gtc or gtd order"
                )
            parsed = parse_decimal(dtext)
            if parsed is None or parsed[0] == 0:
                return self._reject(
                    m,
                    ts,
                    user,
                    coid,
                    "bad_display_qty",
                    f"display_qty {show(dtext)} must be a plain decimal above zero",
                )
            display = m.lot.count(*parsed)  # type: ignore[assignment]
            if display is None:
                return self._reject(
                    m, ts, user, coid, "display_lot_size",
                    f"display_qty {dtext} is not a multiple of the lot size {m.spec.lot_size}",
                )  # fmt: skip
            if display > lots:
                return self._reject(
                    m, ts, user, coid, "display_above_qty", f"display_qty {dtext} is above the order's quantity {qtext}"
                )
        ticks = 0
        if ptext is not None:
            ticks = m.price_cache.get(ptext) if type(ptext) is str else None  # type: ignore[assignment]
            if ticks is None:
                ticks, err = m.parse_price(ptext)  # type: ignore[assignment]
                if err is not None:
                    return self._reject(m, ts, user, coid, *err)
        stop = 0
        if is_stop:
            stop, err = m.parse_price(stext)  # type: ignore[assignment]
            if err is not None:
                code, why = err
                return self._reject(
                    m, ts, user, coid, "stop_tick_size" if code == "tick_size" else "bad_stop_price", "stop " + why
                )
            last = m.last
            if last is not None and (last >= stop if is_buy else last <= stop):
                return self._reject(
                    m, ts, user, coid, "would_trigger",
                    f"the last trade {m.fmt_price(last)} already meets stop_price {m.fmt_price(stop)}: it would"
                    f" trigger at once; place a {'limit' if typ == 'stop_limit' else 'market'} order instead",
                )  # fmt: skip
        if acct is not None and coid in acct.coids:
            return self._reject(
                m,
                ts,
                user,
                coid,
                "duplicate_client_order_id",
                f"client_order_id {show(coid)} is already used by your open order {acct.coids[coid]}",
            )

        if is_stop:
            # Pending: held at placement for what it may spend once triggered, not in the book.
            if is_buy:
                have = acct.avail[m.quote] if acct is not None else 0
                cost = ticks * lots * m.qtl
                need = cost + cost * self._rb // BPS
                if need > have:
                    return self._reject(m, ts, user, coid, "funds", self._funds_reason(m, cost, have))
            else:
                have = acct.avail[m.base] if acct is not None else 0
                need = lots * m.bpl
                if need > have:
                    return self._reject(m, ts, user, coid, "funds", self._funds_reason(m, 0, have, need))
            assert acct is not None
            oid = self._next_oid
            self._next_oid = oid + 1
            m.seq += 1
            events: list[Event] = [
                Accepted(
                    m.seq, ts, m.symbol, user, oid, coid, side, typ, tif, post_only, m.fmt_qty(lots),
                    m.fmt_price(ticks) if ticks else None, m.fmt_price(stop), expire or None, None,
                )
            ]  # fmt: skip
            asset = m.quote if is_buy else m.base
            acct.avail[asset] -= need
            acct.held[asset] += need
            o = _Order(oid, acct, coid, m, is_buy, ticks, lots, lots, post_only, ts, need, typ, tif, stop, expire)
            self._add_stop(o)
            acct.orders[oid] = o
            acct.coids[coid] = oid
            if expire:
                heappush(self._gtd, (expire, oid, acct))
            return events

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

        oid = self._next_oid
        self._next_oid = oid + 1
        seq = m.seq = m.seq + 1
        if expire or display:
            accepted = Accepted(
                seq, ts, m.symbol, user, oid, coid, side, typ, tif, post_only, m.fmt_qty(lots), m.fmt_price(ticks),
                None, expire or None, m.fmt_qty(display) if display else None,
            )  # fmt: skip
        else:
            accepted = Accepted(
                seq, ts, m.symbol, user, oid, coid, side, typ, tif, post_only,
                m.qstr.get(lots) or m.fmt_qty(lots),
                (m.pstr.get(ticks) or m.fmt_price(ticks)) if is_limit else None,
            )  # fmt: skip
        events = [accepted]
        if is_limit:
            limit = ticks
            if not post_only and tif == "fok" and self._available(m, is_buy, acct, lots, ticks) < lots:
                want = 0
        else:
            limit = m.max_ticks if is_buy else 0
        last = m.last
        self._enter(
            m, acct, oid, coid, is_buy, is_limit, ticks, lots, lots, want, limit, tif, post_only,
            remainder if not is_limit else "ioc", ts, ts, events, "limit", expire, display,
        )  # fmt: skip
        if expire and oid in acct.orders:
            heappush(self._gtd, (expire, oid, acct))
        if m.px:
            self._triggers(m, last, ts, events)
        return events

    def _enter(
        self,
        m: _Market,
        acct: _Account,
        oid: int,
        coid: str,
        is_buy: bool,
        is_limit: bool,
        ticks: int,
        lots: int,
        qty: int,
        want: int,
        limit: int,
        tif: str,
        post_only: bool,
        remainder: str,
        placed_ts: int,
        ts: int,
        events: list[Event],
        kind: str,
        expire: int,
        display: int,
    ) -> None:
        """Match an order that is entering now (placed, triggered or re-priced) and rest what is
        left if it may rest. ``lots`` is what is left of it, ``qty`` its whole quantity; ``want``
        is where matching stops (0: nothing trades, the FOK / post-only / no-liquidity cases);
        ``remainder`` the reason a remainder that may not rest is cancelled with. Its funds are
        checked by the caller and are all in ``avail``: the taker settles once, after matching,
        and if it rests, exactly what its remainder may cost moves to reserved."""
        if (is_limit and post_only) and (
            (m.ask_keys and -m.ask_keys[-1] <= ticks) if is_buy else (m.bid_keys and m.bid_keys[-1] >= ticks)
        ):
            want, remainder = 0, "post_only"
        if want == 0:  # FOK that cannot fill completely, post-only that would cross: nothing trades
            remainder = "fok" if tif == "fok" else remainder
            m.seq += 1
            events.append(Cancelled(m.seq, ts, m.symbol, acct.user, oid, coid, m.fmt_qty(lots), remainder))  # type: ignore[arg-type]
            return

        avail = acct.avail
        rests = is_limit and (tif == "gtc" or tif == "gtd")  # only limit gtc / gtd orders rest
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
                o = _Order(oid, acct, coid, m, True, ticks, qty, rem, post_only, placed_ts, keep, kind, tif)
                o.expire, o.display = expire, display
                o.visible = display if display and display < rem else rem
                self._rest(o)
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
                o = _Order(oid, acct, coid, m, False, ticks, qty, rem, post_only, placed_ts, keep, kind, tif)
                o.expire, o.display = expire, display
                o.visible = display if display and display < rem else rem
                self._rest(o)
        if rem and not rests:
            m.seq += 1
            events.append(Cancelled(m.seq, ts, m.symbol, acct.user, oid, coid, m.fmt_qty(rem), remainder))  # type: ignore[arg-type]

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
        px = m.px if m.stop_buys or m.stop_sells else None  # trade prices, for the stops to check
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
                vis = mo.visible  # all of it, unless an iceberg
                n = want if want < vis else vis
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
                mo.visible = vis = vis - n
                lvl.qty -= n
                m.last = p
                if px is not None:
                    px.append(p)
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
                if not vis:
                    q.popleft()
                    if mrem:  # an iceberg's displayed part is gone: refill it, at the back of the level
                        vis = mo.display if mo.display < mrem else mrem
                        mo.visible = vis
                        lvl.hidden -= vis
                        mo.prio = self._next_prio
                        self._next_prio += 1
                        q.append(mo)
                        continue
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
        px = m.px if m.stop_buys or m.stop_sells else None  # trade prices, for the stops to check
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
                vis = mo.visible  # all of it, unless an iceberg
                n = want if want < vis else vis
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
                mo.visible = vis = vis - n
                lvl.qty -= n
                m.last = p
                if px is not None:
                    px.append(p)
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
                if not vis:
                    q.popleft()
                    if mrem:  # an iceberg's displayed part is gone: refill it, at the back of the level
                        vis = mo.display if mo.display < mrem else mrem
                        mo.visible = vis
                        lvl.hidden -= vis
                        mo.prio = self._next_prio
                        self._next_prio += 1
                        q.append(mo)
                        continue
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
        lvl.hidden -= rem - mo.visible
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

    def _rest(self, o: _Order) -> None:
        """Put an order at the back of its level and index it under its owner."""
        m = o.market
        if o.is_buy:
            levels, keys, key = m.bids, m.bid_keys, o.price
        else:
            levels, keys, key = m.asks, m.ask_keys, -o.price
        lvl = levels.get(o.price)
        if lvl is None:
            lvl = levels[o.price] = _Level(o.price)
            insort(keys, key)
        o.prio = self._next_prio
        self._next_prio += 1
        lvl.orders.append(o)
        lvl.count += 1
        lvl.qty += o.remaining
        lvl.hidden += o.remaining - o.visible
        o.acct.orders[o.oid] = o
        o.acct.coids[o.coid] = o.oid

    def _unbook(self, o: _Order, reason: str | None, ts: int, events: list[Event]) -> None:
        """Cancel an open order (resting or a pending stop): Cancelled event (none if ``reason`` is
        None: an amend takes it off to put it back), bookkeeping, reservation released."""
        m = o.market
        rem = o.remaining
        if reason is not None:
            m.seq += 1
            events.append(Cancelled(m.seq, ts, m.symbol, o.user, o.oid, o.coid, m.fmt_qty(rem), reason))  # type: ignore[arg-type]
        if o.pending:
            self._drop_stop(o)
            o.remaining = 0
            self._release(o)
            return
        if o.is_buy:
            levels, keys, key = m.bids, m.bid_keys, o.price
        else:
            levels, keys, key = m.asks, m.ask_keys, -o.price
        lvl = levels[o.price]
        lvl.count -= 1
        lvl.qty -= rem
        lvl.hidden -= rem - o.visible
        o.remaining = 0
        if not lvl.count:
            del levels[o.price]
            del keys[bisect_left(keys, key)]
        elif len(lvl.orders) > 2 * lvl.count + 16:
            lvl.orders = deque(x for x in lvl.orders if x.remaining)
        self._release(o)

    # amend ------------------------------------------------------------------------------

    def _amend(self, c: Amend) -> list[Event]:
        """Change an open order's price and/or quantity (see the module docstring for the rules)."""
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
        assert acct is not None
        if c.price is None and c.qty is None:
            return self._reject(m, ts, user, rid, "bad_amend", "nothing to amend: give a new price, a new qty, or both")
        ticks = o.price
        if c.price is not None:
            if not o.price:
                return self._reject(
                    m,
                    ts,
                    user,
                    rid,
                    "price_not_allowed",
                    "a stop sell has no price to amend (it becomes a market order)",
                )
            ticks, err = m.parse_price(c.price)  # type: ignore[assignment]
            if err is not None:
                return self._reject(m, ts, user, rid, *err)
        qty = o.qty
        if c.qty is not None:
            qty, err = m.parse_qty(c.qty)  # type: ignore[assignment]
            if err is not None:
                return self._reject(m, ts, user, rid, *err)
        filled = o.qty - o.remaining
        if qty <= filled:
            return self._reject(
                m, ts, user, rid, "bad_qty",
                f"the new quantity {m.fmt_qty(qty)} is not above what is already filled ({m.fmt_qty(filled)}):"
                " cancel the order instead",
            )  # fmt: skip
        rem = qty - filled
        is_buy = o.is_buy
        if is_buy:
            cost = ticks * rem * m.qtl
            need = cost + cost * self._rb // BPS
            have = acct.avail[m.quote] + o.reserved
            if need > have:
                return self._reject(m, ts, user, rid, "funds", self._funds_reason(m, cost, have))
        else:
            need = rem * m.bpl
            have = acct.avail[m.base] + o.reserved
            if need > have:
                return self._reject(m, ts, user, rid, "funds", self._funds_reason(m, 0, have, need))
        crosses = not o.pending and (
            bool(m.ask_keys and -m.ask_keys[-1] <= ticks) if is_buy else bool(m.bid_keys and m.bid_keys[-1] >= ticks)
        )
        if crosses and o.post_only:
            return self._reject(
                m, ts, user, rid, "post_only",
                f"a post-only order may not cross: at {m.fmt_price(ticks)} it would trade; your order is unchanged",
            )  # fmt: skip
        keeps = ticks == o.price and rem <= o.remaining  # a decrease (or nothing) at the same price
        m.seq += 1
        events: list[Event] = [
            Amended(
                m.seq, ts, m.symbol, user, oid, o.coid,
                m.fmt_price(o.price) if o.price else None, m.fmt_price(ticks) if ticks else None,
                m.fmt_qty(o.qty), m.fmt_qty(qty), m.fmt_qty(rem), "kept" if keeps else "lost",
            )
        ]  # fmt: skip
        asset = m.quote if is_buy else m.base
        if o.pending:
            if not keeps:
                self._drop_stop(o)
            o.price, o.qty, o.remaining, o.visible = ticks, qty, rem, rem
            acct.avail[asset] += o.reserved - need
            acct.held[asset] += need - o.reserved
            o.reserved = need
            if not keeps:
                self._add_stop(o)
            return events
        if keeps:  # in place: the level, the displayed part (hidden shrinks first) and what it holds
            lvl = (m.bids if is_buy else m.asks)[o.price]
            old_rem, old_vis = o.remaining, o.visible
            vis = old_vis if old_vis < rem else rem
            o.qty, o.remaining, o.visible = qty, rem, vis
            lvl.qty -= old_rem - rem
            lvl.hidden -= (old_rem - old_vis) - (rem - vis)
            acct.avail[asset] += o.reserved - need
            acct.held[asset] -= o.reserved - need
            o.reserved = need
            return events
        # Priority lost: off the book (its reservation back in avail), then in again as a new
        # arrival at the back of its level, trading first as a taker if it now crosses.
        self._unbook(o, None, ts, events)
        last = m.last
        self._enter(
            m, acct, oid, o.coid, is_buy, True, ticks, rem, qty, rem, ticks, o.tif, o.post_only, "ioc",
            o.ts, ts, events, o.kind, o.expire, o.display,
        )  # fmt: skip
        if m.px:
            self._triggers(m, last, ts, events)
        return events

    # stops ------------------------------------------------------------------------------

    def _add_stop(self, o: _Order) -> None:
        """Queue a pending stop at the back of those with its stop price."""
        o.prio = self._next_prio
        self._next_prio += 1
        insort(o.market.stop_buys if o.is_buy else o.market.stop_sells, (o.stop, o.prio, o))

    @staticmethod
    def _drop_stop(o: _Order) -> None:
        stops = o.market.stop_buys if o.is_buy else o.market.stop_sells
        del stops[bisect_left(stops, (o.stop, o.prio))]

    def _triggers(self, m: _Market, last: int | None, ts: int, events: list[Event]) -> None:
        """Enter the stops the trades of this command triggered, then those their trades trigger.

        Per trade, in trade order: the stops it triggers, nearest first (the stop price closest to
        the last trade before it: buys lowest first, sells highest first), then time. They enter
        one by one, after the command that caused them; a stop triggered by a triggered stop's
        trade enters after every stop triggered before it."""
        queue: deque[tuple[_Order, int]] = deque()
        while True:
            px, m.px = m.px, []
            for p in px:
                buys, sells = m.stop_buys, m.stop_sells
                hit: list[tuple[int, int, _Order]] = []
                if buys and buys[0][0] <= p:
                    i = bisect_right(buys, (p, 1 << 62))
                    hit.extend(buys[:i])
                    del buys[:i]
                if sells and sells[-1][0] >= p:
                    i = bisect_left(sells, (p, 0))
                    hit.extend(sells[i:])
                    del sells[i:]
                if hit:
                    ref = p if last is None else last
                    hit.sort(key=lambda e: (abs(e[0] - ref), e[1]))
                    queue.extend((o, p) for _, _, o in hit)
                last = p
            if not queue:
                m.px = []
                return
            o, p = queue.popleft()
            self._fire(o, p, ts, events)

    def _fire(self, o: _Order, p: int, ts: int, events: list[Event]) -> None:
        """A triggered stop enters: its reservation goes back to available (it covers what the order
        may now spend) and it matches as a market order (a stop buy capped at its price) or a limit
        order at its price (stop_limit). Stop-market orders never rest: no liquidity cancels."""
        m, acct = o.market, o.acct
        o.pending = False
        self._release(o)
        lots, is_buy = o.remaining, o.is_buy
        m.seq += 1
        events.append(
            Triggered(
                m.seq, ts, m.symbol, o.user, o.oid, o.coid, "buy" if is_buy else "sell", o.kind,  # type: ignore[arg-type]
                m.fmt_price(o.stop), m.fmt_price(o.price) if o.price else None, m.fmt_qty(lots), m.fmt_price(p),
            )
        )  # fmt: skip
        if o.kind == "stop_limit":
            want = lots
            if not o.post_only and o.tif == "fok" and self._available(m, is_buy, acct, lots, o.price) < lots:
                want = 0
            self._enter(
                m, acct, o.oid, o.coid, is_buy, True, o.price, lots, o.qty, want, o.price, o.tif, o.post_only, "ioc",
                o.ts, ts, events, o.kind, o.expire, 0,
            )  # fmt: skip
            return  # if it rests, its expiry entry from placement still stands (same id, same expire_at)
        limit = o.price if is_buy else 0
        fillable = self._available(m, is_buy, acct, lots, limit)
        want = 0 if not fillable or (o.tif == "fok" and fillable < lots) else lots
        self._enter(
            m, acct, o.oid, o.coid, is_buy, False, o.price, lots, o.qty, want, limit, o.tif, False, "no_liquidity",
            o.ts, ts, events, o.kind, 0, 0,
        )  # fmt: skip

    # expiry -----------------------------------------------------------------------------

    def _expire(self, ts: int) -> list[Event]:
        """Cancel (``expired``) every good-till-date order due by ``ts``, earliest first, then by id."""
        heap, events = self._gtd, []
        while heap and heap[0][0] <= ts:
            expire, oid, acct = heappop(heap)
            o = acct.orders.get(oid)
            if o is not None and o.expire == expire:
                self._unbook(o, "expired", ts, events)
        return events

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
        mine = (
            sorted((o for o in acct.orders.values() if o.market is m), key=lambda o: o.oid) if acct is not None else []
        )
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

        def row(o: _Order) -> _SnapOrder:
            return _SnapOrder(
                o.oid, o.user, o.coid, o.price, o.qty, o.remaining, o.post_only, o.ts, o.reserved,
                o.kind, o.tif, o.stop, o.expire, o.display, o.visible,
            )  # fmt: skip

        def orders(keys: list[int], levels: dict[int, _Level], sign: int) -> list[_SnapOrder]:
            return [row(o) for k in reversed(keys) for o in levels[k * sign].orders if o.remaining]

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
                _SnapBook(
                    m.symbol,
                    m.seq,
                    m.last,
                    orders(m.bid_keys, m.bids, 1),
                    orders(m.ask_keys, m.asks, -1),
                    [row(o) for _, _, o in m.stop_buys],
                    [row(o) for _, _, o in m.stop_sells],
                )
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
        if snap.version not in (1, SNAPSHOT_VERSION):  # a version 1 snapshot decodes with v2's defaults
            raise ValueError(
                f"snapshot version {snap.version} is not 1 or {SNAPSHOT_VERSION}: restore it with its stockctl"
            )
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
            for want_buy, rows, stops in ((True, b.bids, b.stop_buys), (False, b.asks, b.stop_sells)):
                for pending, group in ((False, rows), (True, stops)):
                    for r in group:
                        acct = ex._accounts.get(r.user)
                        if acct is None:
                            raise ValueError(f"snapshot order {r.oid} belongs to no account")
                        kinds = ("stop", "stop_limit") if pending else ("limit", "stop_limit")
                        if r.kind not in kinds or r.tif not in _TIFS or (r.stop > 0) is not pending:
                            raise ValueError(f"snapshot order {r.oid} has a bad type {r.kind!r} or stop {r.stop}")
                        o = _Order(
                            r.oid, acct, r.coid, m, want_buy, r.price, r.qty, r.remaining, r.post_only, r.ts,
                            r.reserved, r.kind, r.tif, r.stop, r.expire, r.display,
                        )  # fmt: skip
                        o.visible = r.visible or r.remaining
                        if o.expire:
                            heappush(ex._gtd, (o.expire, o.oid, acct))
                        every.append(o)
                        if pending:
                            ex._add_stop(o)
                            continue
                        levels, keys, key = (
                            (m.bids, m.bid_keys, o.price) if want_buy else (m.asks, m.ask_keys, -o.price)
                        )
                        lvl = levels.get(o.price)
                        if lvl is None:
                            lvl = levels[o.price] = _Level(o.price)
                            insort(keys, key)
                        o.prio = ex._next_prio
                        ex._next_prio += 1
                        lvl.orders.append(o)
                        lvl.count += 1
                        lvl.qty += o.remaining
                        lvl.hidden += o.remaining - o.visible
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
