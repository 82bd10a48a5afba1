"""The matching engine: order books, accounts and settlement as one pure state machine.

``Exchange.apply(command) -> [events]`` is the whole interface the matching daemon drives.
There is no I/O, no clock (every event carries its command's ``ts``), no randomness and no
float: the same commands give the same events, byte for byte, and ``snapshot()`` /
``restore()`` carry the exact state (sequences, ids, books in time priority, balances).

This module is the state machine and its matching loop. What an order may say (and the code a
rule's rejection carries) is ``validation``'s; the book's structures and read-only queries are
``book``'s; accounts and the reservation rule ``accounts``'; the snapshot format ``snapshot``'s.

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

Orders. Price-time priority; the trade price is the maker's. Limit GTC and GTD orders rest;
IOC cancels its remainder (``ioc``); FOK is checked against the book before anything is touched
and is cancelled whole (``fok``) unless it can fill completely (an iceberg's hidden part
counts); a post-only order that would cross (any resting order at a crossing price, the user's
own included) is cancelled (``post_only``) without trading; market orders never rest: a
remainder is cancelled with ``no_liquidity`` (the book ran out) or ``funds`` (a market buy
capped by the buyer's quote). A market order that cannot fill even one lot is Rejected instead
(``no_liquidity`` / ``funds``): nothing changed. Self-trade prevention: an incoming order never
fills against its user's resting order; that resting order is cancelled (``self_trade``) and
matching continues (a market buy capped by funds stops where its funds do).

Order types beyond these. Amend changes a resting order's (or pending stop's) price and/or
quantity: a decrease at the same price keeps time priority, anything else goes to the back of
the (new) level and, if it now crosses, trades as a taker at once; a post-only order that would
cross is refused and stays. A stop (a market order once triggered, a buy capped at ``price``)
or stop-limit (a limit order at ``price``) waits outside the book until the market's last trade
reaches its ``stop_price`` (buy: at or above, sell: at or below); one whose condition holds at
placement is refused (``would_trigger``). The stops one trade triggers enter after the command
that caused them, the stop price nearest the previous trade first (with no previous trade, the
farthest from this one: buys lowest, sells highest), then by time; their trades may trigger
more, which queue behind. A GTD order is cancelled (``expired``) by the first command whose
``ts`` is at or past its ``expire_at``, before that command is matched. An iceberg
(``display_qty``) shows only its displayed part in ``book()``; a filled displayed part refills
from the hidden part and goes to the back of its level.

Events. Each market numbers its events ``seq`` 1, 2, 3... The pseudo-market ``ACCOUNTS`` has
its own sequence and carries ``Funded``, rejected ``Fund`` commands, and the rejection of any
command that names no known market or is malformed (so no sequence, and no event subject, is
ever made from an arbitrary market name); a market group's engine names it after the group. Order
ids and trade ids are global and consecutive (a market group's step by the number of groups). A
command's events are: first the ``Cancelled(expired)`` of every GTD order it made due (in any
market); then its own: ``Accepted`` (or ``Amended``), then ``Cancelled(self_trade)`` / ``Trade``
events in matching order, then at most one ``Cancelled`` for the remainder (a pending stop's
placement is its ``Accepted`` alone); then, stop by stop, each triggered stop's ``Triggered``
followed by its own trades and cancels, in the same shape. ``CancelAll`` with nothing to cancel
is a ``Rejected`` (``no_open_orders``), so every command gets an answer; a ``Time`` command with
nothing due has no events.

Rejection codes: ``unknown_market``, ``bad_command``, ``bad_user``, ``bad_client_order_id``,
``bad_side``, ``bad_type``, ``bad_tif``, ``bad_post_only``, ``post_only_market``,
``post_only_tif``, ``price_required``, ``price_not_allowed``, ``bad_qty``, ``lot_size``,
``min_qty``, ``max_qty``, ``bad_price``, ``tick_size``, ``price_range``,
``duplicate_client_order_id``, ``funds``, ``no_liquidity``, ``unknown_order``,
``no_open_orders``, ``already_funded``, ``unknown_asset``, ``bad_amount``; for stops
``stop_price_required``, ``stop_price_not_allowed``, ``bad_stop_price``, ``stop_tick_size``,
``would_trigger``; for GTD ``bad_expire_at``, ``expire_in_past``; for icebergs
``display_not_allowed``, ``bad_display_qty``, ``display_lot_size``, ``display_above_qty``; for
amends ``bad_amend`` (neither price nor qty), ``post_only`` (it would cross).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Sequence
from heapq import heappop, heappush
from typing import Protocol

from stockctl.exchange import snapshot as snapshots
from stockctl.exchange.accounts import (
    BPS,
    FEE_ACCOUNT,
    Account,
    bad_user,
    fund_credits,
    hold_for,
    release,
    shortfall,
)
from stockctl.exchange.book import ACCOUNTS, BookView, Level, Market, Order, OrderView
from stockctl.exchange.units import fmt_amount, show
from stockctl.exchange.unknown import UnknownMarket
from stockctl.exchange.validation import CACHE_MAX, amend_problem, order_problems
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


class _In(Protocol):
    """How the engine reads a command: every field as ``object``. A command built in Python is not
    type-checked (decoding is), so a field of the wrong type is a rejection like any bad input; and
    a compiled build checks a field's declared type as it reads it (a TypeError), which reading
    through these protocols avoids. A field is used as its type only once it has been checked."""

    @property
    def user(self) -> object: ...
    @property
    def market(self) -> object: ...
    @property
    def ts(self) -> object: ...


class _PlaceIn(_In, Protocol):
    @property
    def client_order_id(self) -> object: ...
    @property
    def side(self) -> object: ...
    @property
    def type(self) -> object: ...
    @property
    def qty(self) -> object: ...
    @property
    def price(self) -> object: ...
    @property
    def tif(self) -> object: ...
    @property
    def post_only(self) -> object: ...
    @property
    def stop_price(self) -> object: ...
    @property
    def expire_at(self) -> object: ...
    @property
    def display_qty(self) -> object: ...


class _RequestIn(_In, Protocol):
    @property
    def request_id(self) -> object: ...


class _OrderIdIn(_RequestIn, Protocol):
    @property
    def order_id(self) -> object: ...


class _AmendIn(_OrderIdIn, Protocol):
    @property
    def price(self) -> object: ...
    @property
    def qty(self) -> object: ...


class _FundIn(_RequestIn, Protocol):
    @property
    def amounts(self) -> object: ...


def _check_bps(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= BPS:
        raise ValueError(f"{name} must be an integer from 0 to {BPS}, not {value!r}")
    return value


class Exchange:
    """Markets, their order books and the accounts trading on them. See the module docstring."""

    __slots__ = (
        "_accounts",
        "_accounts_market",
        "_accounts_seq",
        "_assets",
        "_fee_str",
        "_fees",
        "_gtd",
        "_id_step",
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
        self,
        markets: Sequence[MarketSpec] = DEFAULT_MARKETS,
        taker_fee_bps: int = 10,
        maker_fee_bps: int = 0,
        first_id: int = 1,
        id_step: int = 1,
        accounts_market: str = ACCOUNTS,
    ) -> None:
        # first_id, id_step: a market group's share of the order and trade ids (group i of n
        # numbers them i+1, i+1+n, ...), so ids stay unique across groups; accounts_market: the
        # pseudo-market its account events carry (see stockctl.exchange.groups).
        if not 1 <= first_id <= id_step:
            raise ValueError(f"first_id {first_id} must be 1..id_step ({id_step})")
        self._tb = _check_bps("taker_fee_bps", taker_fee_bps)
        self._mb = _check_bps("maker_fee_bps", maker_fee_bps)
        self._rb = max(self._tb, self._mb)  # what a limit buy reserves for its fee
        self._markets: dict[str, Market] = {}
        assets: dict[str, None] = {}
        for spec in markets:
            if not isinstance(spec, MarketSpec):
                raise ValueError(f"not a MarketSpec: {spec!r}")
            if spec.symbol in self._markets:
                raise ValueError(f"market {spec.symbol} is listed twice")
            self._markets[spec.symbol] = Market(spec)
            assets[spec.base] = None
            assets[spec.quote] = None
        if not self._markets:
            raise ValueError("an exchange needs at least one market")
        self._assets: tuple[str, ...] = tuple(assets)
        self._accounts: dict[str, Account] = {}
        self._fees = Account(FEE_ACCOUNT, self._assets)
        self._accounts_seq = 0
        self._next_oid = first_id
        self._next_tid = first_id
        self._id_step = id_step
        self._accounts_market = accounts_market
        self._next_prio = 1  # time priority counter (internal: never in events or snapshots)
        self._gtd: list[tuple[int, int, Account]] = []  # heap of (expire_at, order id, owner); stale entries skipped
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

    def _market(self, market: str) -> Market:
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
        return [o.market.view(o) for o in mine]

    def next_expiry(self) -> int | None:
        """The earliest ``expire_at`` (ns) of an open good-till-date order, or None: a command with
        a ``ts`` at or past it expires that order (it may be stale: then that command expires nothing)."""
        return self._gtd[0][0] if self._gtd else None

    def book(self, market: str, depth: int = 20) -> BookView:
        """Depth of one market, best level first; ``seq`` is the market's last event seq."""
        return self._market(market).depth(depth)

    def seq(self, market: str) -> int:
        """The last event seq of a market (or of ``ACCOUNTS``); 0 before any event."""
        if market == self._accounts_market:
            return self._accounts_seq
        return self._market(market).seq

    def totals(self) -> dict[str, int]:
        """Per asset, available + reserved summed over every account (users and fees), in 1e-8 units."""
        out = dict.fromkeys(self._assets, 0)
        for acct in (*self._accounts.values(), self._fees):
            for a in self._assets:
                out[a] += acct.avail[a] + acct.held[a]
        return out

    def _reserve_for(self, o: Order) -> int:
        """What a resting order must hold for its remaining quantity."""
        return hold_for(o.market, o.is_buy, o.price, o.remaining, self._rb)

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
            fields: _In = cmd  # read as object: see _In
            if type(fields.ts) is not int:
                return [self._sys_reject(cmd, "", "bad_command", "malformed command: ts must be an int")]
            return []  # its work, the expiry, is done: a time with nothing due says nothing
        return [self._sys_reject(cmd, "", "bad_command", f"not a command: {type(cmd).__name__}")]

    # rejections -----------------------------------------------------------------------------

    def _reject(self, m: Market, ts: int, user: str, ident: str, code: str, reason: str) -> list[Event]:
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
            self._accounts_market,
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

    def _early_reject(self, cmd: _In, ident_field: str) -> list[Event]:
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

    def _place(self, c: _PlaceIn) -> list[Event]:
        market, user, coid, ts = c.market, c.user, c.client_order_id, c.ts
        if type(market) is not str or type(user) is not str or type(coid) is not str or type(ts) is not int:
            return self._early_reject(c, "client_order_id")
        m = self._markets.get(market)
        if m is None:
            return self._early_reject(c, "client_order_id")
        acct = self._accounts.get(user)
        if acct is None:
            bad = bad_user(user)
            if bad:
                return self._reject(m, ts, user, coid, "bad_user", bad)
        ptext, stext, dtext, qtext = c.price, c.stop_price, c.display_qty, c.qty
        bad_fields = order_problems(
            coid, c.side, c.type, c.tif, c.post_only, ptext is not None, stext is not None, c.expire_at, ts
        )
        if bad_fields:
            return self._reject(m, ts, user, coid, *bad_fields[0])
        # order_problems passed: these fields have their types.
        side: Side = c.side  # type: ignore[assignment]
        typ: OrderType = c.type  # type: ignore[assignment]
        tif: TimeInForce = c.tif  # type: ignore[assignment]
        post_only: bool = c.post_only  # type: ignore[assignment]
        is_buy = side == "buy"
        is_stop = typ == "stop" or typ == "stop_limit"
        is_limit = typ == "limit" or typ == "stop_limit"  # has a limit price (a stop buy's price is its cap)
        expire: int = c.expire_at or 0  # type: ignore[assignment]
        cached = m.qty_cache.get(qtext) if type(qtext) is str else None
        if cached is None:
            got, err = m.qty(qtext)
            if err is not None:
                return self._reject(m, ts, user, coid, *err)
            assert got is not None
            lots = got
        else:
            lots = cached
        display = 0
        if dtext is not None:
            got, err = m.display(dtext, typ, tif, lots, qtext)
            if err is not None:
                return self._reject(m, ts, user, coid, *err)
            assert got is not None
            display = got
        ticks = 0
        if ptext is not None:
            cached = m.price_cache.get(ptext) if type(ptext) is str else None
            if cached is None:
                got, err = m.price(ptext)
                if err is not None:
                    return self._reject(m, ts, user, coid, *err)
                assert got is not None
                ticks = got
            else:
                ticks = cached
        stop = 0
        if is_stop:
            got, err = m.stop_price(stext)
            if err is not None:
                return self._reject(m, ts, user, coid, *err)
            assert got is not None
            stop = got
            err = m.trigger_problem(typ, is_buy, stop, m.last)
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

        # Funds: every order but a market buy must have what it may spend (a stop: once triggered),
        # which is what it holds while open: accounts.hold_for, written out here (the hot path).
        if is_buy:
            have = acct.avail[m.quote] if acct is not None else 0
            need = ticks * lots * m.qtl
            need += need * self._rb // BPS
        else:
            have = acct.avail[m.base] if acct is not None else 0
            need = lots * m.bpl
        if need > have and (is_limit or is_stop or not is_buy):
            return self._reject(m, ts, user, coid, "funds", shortfall(m, is_buy, ticks, lots, have, self._rb)[1])  # type: ignore[arg-type]
        if is_stop:
            # Pending: held at placement for what it may spend once triggered, not in the book.
            assert acct is not None
            oid = self._next_oid
            self._next_oid = oid + self._id_step
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
            o = Order(oid, acct, coid, m, is_buy, ticks, lots, lots, post_only, ts, need, typ, tif, stop, expire)
            self._add_stop(o)
            acct.orders[oid] = o
            acct.coids[coid] = oid
            if expire:
                heappush(self._gtd, (expire, oid, acct))
            return events

        # Liquidity, for market orders. ``want`` is where matching stops; a market order that
        # cannot fill one lot is rejected here, before it gets an id.
        want = lots
        remainder = "no_liquidity"  # why a market order's remainder is cancelled (IOC: "ioc")
        if not is_limit and is_buy:
            fillable, _, funds_limited = m.walk_market_buy(acct, lots, have, self._tb)
            if fillable == 0:
                return self._reject(m, ts, user, coid, *m.market_buy_refusal(acct, have, self._tb))
            if funds_limited:
                # Stop where the money runs out; otherwise match on like any order (the book
                # runs out, and the buyer's own asks on the way are cancelled as self-trades).
                want, remainder = fillable, "funds"
            if tif == "fok" and fillable < lots:
                want = 0
        elif not is_limit:
            fillable = m.fillable(False, acct, lots, 0)  # type: ignore[arg-type]
            if fillable == 0:
                return self._reject(
                    m, ts, user, coid, "no_liquidity", f"no buy orders in {m.symbol} to sell to (other than yours)"
                )
            if tif == "fok" and fillable < lots:
                want = 0
        assert acct is not None  # every accepted order needs funds, hence an account

        oid = self._next_oid
        self._next_oid = oid + self._id_step
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
            if not post_only and tif == "fok" and m.fillable(is_buy, acct, lots, ticks) < lots:
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
        m: Market,
        acct: Account,
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
                o = Order(
                    oid, acct, coid, m, True, ticks, qty, rem, post_only, placed_ts, keep, kind, tif, 0, expire, display
                )
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
                o = Order(
                    oid,
                    acct,
                    coid,
                    m,
                    False,
                    ticks,
                    qty,
                    rem,
                    post_only,
                    placed_ts,
                    keep,
                    kind,
                    tif,
                    0,
                    expire,
                    display,
                )
                self._rest(o)
        if rem and not rests:
            m.seq += 1
            events.append(Cancelled(m.seq, ts, m.symbol, acct.user, oid, coid, m.fmt_qty(rem), remainder))  # type: ignore[arg-type]

    def _fee_text(self, units: int) -> str:
        s = fmt_amount(units)
        if len(self._fee_str) >= CACHE_MAX:
            self._fee_str.clear()
            self._fee_str[0] = "0"
        self._fee_str[units] = s
        return s

    # The two matching loops below are the hot path: they are written out per side, with
    # attributes in locals, and settle each maker as they go; the taker's totals are returned
    # (remaining lots, quote notional, taker fees, maker fees) and settled once by the caller.

    def _take_buy(
        self,
        m: Market,
        acct: Account,
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
                self._next_tid = tid + self._id_step
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
        m: Market,
        acct: Account,
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
                self._next_tid = tid + self._id_step
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

    def _self_trade(self, m: Market, mo: Order, lvl: Level, ts: int, events: list[Event]) -> None:
        """Cancel a resting order the incoming order of its own user reached (the caller pops it)."""
        rem = mo.remaining
        m.seq += 1
        events.append(Cancelled(m.seq, ts, m.symbol, mo.user, mo.oid, mo.coid, m.fmt_qty(rem), "self_trade"))
        lvl.count -= 1
        lvl.qty -= rem
        lvl.hidden -= rem - mo.visible
        mo.remaining = 0
        release(mo)

    def _rest(self, o: Order) -> None:
        """Put an order at the back of its level and index it under its owner."""
        m = o.market
        if o.is_buy:
            levels, keys, key = m.bids, m.bid_keys, o.price
        else:
            levels, keys, key = m.asks, m.ask_keys, -o.price
        lvl = levels.get(o.price)
        if lvl is None:
            lvl = levels[o.price] = Level(o.price)
            insort(keys, key)
        o.prio = self._next_prio
        self._next_prio += 1
        lvl.orders.append(o)
        lvl.count += 1
        lvl.qty += o.remaining
        lvl.hidden += o.remaining - o.visible
        o.acct.orders[o.oid] = o
        o.acct.coids[o.coid] = o.oid

    def _unbook(self, o: Order, reason: str | None, ts: int, events: list[Event]) -> None:
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
            release(o)
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
        release(o)

    # amend ------------------------------------------------------------------------------

    def _own_order(self, c: _OrderIdIn) -> Order | list[Event]:
        """The open order a cancel or an amend names (in its market, of its user), or the rejection."""
        user, rid, ts, oid, market = c.user, c.request_id, c.ts, c.order_id, c.market
        m = self._markets.get(market) if type(market) is str else None
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
        return o

    def _amend(self, c: _AmendIn) -> list[Event]:
        """Change an open order's price and/or quantity (the rules: the module docstring's "Order
        types beyond these"). The checks come first, so a refused amend changes nothing: the id is
        the user's open order, the new values are valid (qty above what is filled), the funds cover
        the new reservation, and a post-only order would not cross. Then ``Amended``; a pending
        stop only moves among the stops; a kept priority changes the order in place; otherwise it
        leaves the book and enters again as a new arrival (trading if it crosses), and the stops
        its trades trigger follow."""
        o = self._own_order(c)
        if isinstance(o, list):
            return o
        m, acct = o.market, o.acct
        # _own_order checked these.
        user: str = c.user  # type: ignore[assignment]
        rid: str = c.request_id  # type: ignore[assignment]
        ts: int = c.ts  # type: ignore[assignment]
        oid: int = c.order_id  # type: ignore[assignment]
        ptext, qtext = c.price, c.qty
        bad = amend_problem(ptext, qtext, bool(o.price))
        if bad is not None:
            return self._reject(m, ts, user, rid, *bad)
        ticks = o.price
        if ptext is not None:
            got, err = m.price(ptext)
            if err is not None:
                return self._reject(m, ts, user, rid, *err)
            assert got is not None
            ticks = got
        qty = o.qty
        if qtext is not None:
            got, err = m.qty(qtext)
            if err is not None:
                return self._reject(m, ts, user, rid, *err)
            assert got is not None
            qty = got
        filled = o.qty - o.remaining
        bad = m.filled_problem(qty, filled)
        if bad is not None:
            return self._reject(m, ts, user, rid, *bad)
        rem = qty - filled
        is_buy = o.is_buy
        # What it holds now counts towards what it needs.
        have = acct.avail[m.quote if is_buy else m.base] + o.reserved
        need, short = shortfall(m, is_buy, ticks, rem, have, self._rb)
        if short is not None:
            return self._reject(m, ts, user, rid, "funds", short)
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
                "pending" if o.pending else "open",
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
        o.price, o.qty = ticks, qty
        self._enter_limit(o, rem, ts, events)
        if m.px:
            self._triggers(m, last, ts, events)
        return events

    # stops ------------------------------------------------------------------------------

    def _add_stop(self, o: Order) -> None:
        """Queue a pending stop at the back of those with its stop price."""
        o.prio = self._next_prio
        self._next_prio += 1
        insort(o.market.stop_buys if o.is_buy else o.market.stop_sells, (o.stop, o.prio, o))

    @staticmethod
    def _drop_stop(o: Order) -> None:
        stops = o.market.stop_buys if o.is_buy else o.market.stop_sells
        del stops[bisect_left(stops, (o.stop, o.prio))]

    def _triggers(self, m: Market, last: int | None, ts: int, events: list[Event]) -> None:
        """Enter the stops the trades of this command triggered, then those their trades trigger.

        Per trade, in trade order: the stops it triggers, nearest first (the stop price closest to
        the last trade before it: buys lowest first, sells highest first), then time; with no trade
        before it, the farthest from its price first (still buys lowest, sells highest). They enter
        one by one, after the command that caused them; a stop triggered by a triggered stop's
        trade enters after every stop triggered before it."""
        queue: deque[tuple[Order, int]] = deque()
        while True:
            px, m.px = m.px, []
            for p in px:
                buys, sells = m.stop_buys, m.stop_sells
                hit: list[tuple[int, int, Order]] = []
                if buys and buys[0][0] <= p:
                    i = bisect_right(buys, (p, 1 << 62))
                    hit.extend(buys[:i])
                    del buys[:i]
                if sells and sells[-1][0] >= p:
                    i = bisect_left(sells, (p, 0))
                    hit.extend(sells[i:])
                    del sells[i:]
                if hit:
                    if last is None:
                        # No trade before this one: the market came from below to the buy stops and
                        # from above to the sell stops, so the nearest to where it came from is the
                        # farthest from this price (buys lowest first, sells highest first).
                        hit.sort(key=lambda e: (-abs(e[0] - p), e[1]))
                    else:
                        ref = last
                        hit.sort(key=lambda e: (abs(e[0] - ref), e[1]))
                    queue.extend((o, p) for _, _, o in hit)
                last = p
            if not queue:
                m.px = []
                return
            o, p = queue.popleft()
            self._fire(o, p, ts, events)

    def _fire(self, o: Order, p: int, ts: int, events: list[Event]) -> None:
        """A triggered stop enters: its reservation goes back to available (it covers what the order
        may now spend) and it matches as a market order (a stop buy capped at its price) or a limit
        order at its price (stop_limit). Stop-market orders never rest: no liquidity cancels."""
        m, acct = o.market, o.acct
        o.pending = False
        release(o)
        lots, is_buy = o.remaining, o.is_buy
        m.seq += 1
        events.append(
            Triggered(
                m.seq, ts, m.symbol, o.user, o.oid, o.coid, "buy" if is_buy else "sell", o.kind,  # type: ignore[arg-type]
                m.fmt_price(o.stop), m.fmt_price(o.price) if o.price else None, m.fmt_qty(lots), m.fmt_price(p),
            )
        )  # fmt: skip
        if o.kind == "stop_limit":
            self._enter_limit(o, lots, ts, events)
            return  # if it rests, its expiry entry from placement still stands (same id, same expire_at)
        limit = o.price if is_buy else 0
        fillable = m.fillable(is_buy, acct, lots, limit)
        want = 0 if not fillable or (o.tif == "fok" and fillable < lots) else lots
        self._enter(
            m, acct, o.oid, o.coid, is_buy, False, o.price, lots, o.qty, want, limit, o.tif, False, "no_liquidity",
            o.ts, ts, events, o.kind, 0, 0,
        )  # fmt: skip

    def _enter_limit(self, o: Order, lots: int, ts: int, events: list[Event]) -> None:
        """An open order that is off the book enters again as a limit order at its price, for
        ``lots``, keeping its id, placement time and terms: a triggered stop-limit, or an amend that
        lost priority. Only a FOK stop-limit can be all-or-nothing here (a resting order is gtc/gtd)."""
        m, acct, is_buy, price = o.market, o.acct, o.is_buy, o.price
        want = lots
        if not o.post_only and o.tif == "fok" and m.fillable(is_buy, acct, lots, price) < lots:
            want = 0
        self._enter(
            m, acct, o.oid, o.coid, is_buy, True, price, lots, o.qty, want, price, o.tif, o.post_only, "ioc",
            o.ts, ts, events, o.kind, o.expire, o.display,
        )  # fmt: skip

    # expiry -----------------------------------------------------------------------------

    def _expire(self, ts: int) -> list[Event]:
        """Cancel (``expired``) every good-till-date order due by ``ts``, earliest first, then by id."""
        heap = self._gtd
        events: list[Event] = []
        while heap and heap[0][0] <= ts:
            expire, oid, acct = heappop(heap)
            o = acct.orders.get(oid)
            if o is not None and o.expire == expire:
                self._unbook(o, "expired", ts, events)
        return events

    # cancel -----------------------------------------------------------------------------

    def _cancel(self, c: _OrderIdIn) -> list[Event]:
        o = self._own_order(c)
        if isinstance(o, list):
            return o
        events: list[Event] = []
        self._unbook(o, "user", c.ts, events)  # type: ignore[arg-type]
        return events

    def _cancel_all(self, c: _RequestIn) -> list[Event]:
        user, rid, ts, market = c.user, c.request_id, c.ts, c.market
        m = self._markets.get(market) if type(market) is str else None
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

    def _fund(self, c: _FundIn) -> list[Event]:
        user, rid, ts, amounts = c.user, c.request_id, c.ts, c.amounts
        if type(user) is not str or type(rid) is not str or type(ts) is not int or type(amounts) is not dict:
            problem = self._malformed(c, (("user", str), ("request_id", str), ("ts", int), ("amounts", dict)))
            return [self._sys_reject(c, rid, "bad_command", problem or "malformed command")]
        bad = bad_user(user)
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
        credits, bad_amounts = fund_credits(amounts, self._assets)
        if bad_amounts is not None:
            return [self._sys_reject(c, rid, *bad_amounts)]
        assert credits is not None
        acct = self._accounts[user] = Account(user, self._assets)
        for asset in sorted(credits):
            acct.avail[asset] += credits[asset]
        self._accounts_seq += 1
        amounts = {a: fmt_amount(credits[a]) for a in sorted(credits)}
        return [Funded(self._accounts_seq, ts, self._accounts_market, user, amounts)]

    # --- snapshot ------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The exact state as JSON bytes: restore() of them continues with the same events."""
        return snapshots.save(self)

    @classmethod
    def restore(cls, data: bytes, id_step: int = 1, accounts_market: str = ACCOUNTS) -> Exchange:
        """The exchange a snapshot describes (for a market group: its id step and accounts market).
        Raises ValueError if the data is not a consistent snapshot."""
        return snapshots.load(cls, data, id_step, accounts_market)


__all__ = ["Exchange", "UnknownMarket"]
