"""The engine's snapshot: its exact state as JSON bytes, and back.

``save(exchange)`` writes, and ``load(Exchange, data)`` rebuilds, everything that decides future
events: markets and fees, the order and trade id counters, the ``ACCOUNTS`` seq, per market its
seq, last trade, both books in time priority (best level first) and its pending stops in trigger
order, and every account's available and reserved amounts (in funding order). Restoring and then
applying commands gives the same events as never having stopped. Integers only (ticks, lots,
1e-8 units). An order is a row (a JSON array); version 2 added the rows' last six fields (pending
stops, iceberg display, good-till-date expiry), so a version 1 snapshot restores with their
defaults. ``load`` raises ValueError for data that is not a consistent snapshot (it ends with the
engine's own audit). This module is the engine's own persistence: it reads and sets the
Exchange's internal state directly.
"""

from __future__ import annotations

from heapq import heappush
from typing import TYPE_CHECKING

import msgspec

from stockctl.exchange.accounts import Account, bad_user
from stockctl.exchange.book import ACCOUNTS, Level, Order
from stockctl.exchange.validation import LIMIT_TYPES, STOP_TYPES, TIFS
from stockctl.wire.exchange import MarketSpec

if TYPE_CHECKING:
    from stockctl.exchange.engine import Exchange

SNAPSHOT_VERSION = 2
"""2 adds pending stops, iceberg display and good-till-date expiry; version 1 snapshots still restore."""


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


_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(_Snapshot)


def _row(o: Order) -> _SnapOrder:
    return _SnapOrder(
        o.oid, o.user, o.coid, o.price, o.qty, o.remaining, o.post_only, o.ts, o.reserved,
        o.kind, o.tif, o.stop, o.expire, o.display, o.visible,
    )  # fmt: skip


def _rows(keys: list[int], levels: dict[int, Level], sign: int) -> list[_SnapOrder]:
    return [_row(o) for k in reversed(keys) for o in levels[k * sign].orders if o.remaining]


def _account(a: Account) -> _SnapAccount:
    return _SnapAccount(a.user, dict(a.avail), dict(a.held))


def save(ex: Exchange) -> bytes:
    """The exact state of ``ex`` as JSON bytes: :func:`load` of them continues with the same events."""
    snap = _Snapshot(
        version=SNAPSHOT_VERSION,
        markets=list(ex.markets),
        taker_fee_bps=ex._tb,
        maker_fee_bps=ex._mb,
        next_order_id=ex._next_oid,
        next_trade_id=ex._next_tid,
        accounts_seq=ex._accounts_seq,
        books=[
            _SnapBook(
                m.symbol,
                m.seq,
                m.last,
                _rows(m.bid_keys, m.bids, 1),
                _rows(m.ask_keys, m.asks, -1),
                [_row(o) for _, _, o in m.stop_buys],
                [_row(o) for _, _, o in m.stop_sells],
            )
            for m in ex._markets.values()
        ],
        fees=_account(ex._fees),
        accounts=[_account(a) for a in ex._accounts.values()],
    )
    return _encode(snap)


def load(cls: type[Exchange], data: bytes, id_step: int = 1, accounts_market: str = ACCOUNTS) -> Exchange:
    """The exchange a snapshot describes, numbering ids by ``id_step`` and naming its account events'
    market ``accounts_market`` (a market group's). Raises ValueError if the data is not a consistent
    snapshot."""
    try:
        snap = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not an exchange snapshot: {exc}") from None
    if snap.version not in (1, SNAPSHOT_VERSION):  # a version 1 snapshot decodes with v2's defaults
        raise ValueError(
            f"snapshot version {snap.version} is not 1 or {SNAPSHOT_VERSION}: restore it with its stockctl"
        )
    ex = cls(snap.markets, snap.taker_fee_bps, snap.maker_fee_bps, 1, id_step, accounts_market)
    ex._next_oid = snap.next_order_id
    ex._next_tid = snap.next_trade_id
    ex._accounts_seq = snap.accounts_seq
    assets = ex.assets

    def fill(acct: Account, s: _SnapAccount) -> None:
        if set(s.avail) != set(assets) or set(s.held) != set(assets):
            raise ValueError(f"snapshot account {s.user!r} does not list exactly the assets {assets}")
        acct.avail.update(s.avail)
        acct.held.update(s.held)

    fill(ex._fees, snap.fees)
    for s in snap.accounts:
        if s.user in ex._accounts or bad_user(s.user):
            raise ValueError(f"snapshot has a bad or repeated account {s.user!r}")
        fill(ex._accounts.setdefault(s.user, Account(s.user, assets)), s)
    if [b.symbol for b in snap.books] != list(ex._markets):
        raise ValueError("snapshot books do not match its markets")
    placed: list[tuple[Order, bool]] = []  # in book order: what time priority is given in
    for b in snap.books:
        m = ex._markets[b.symbol]
        m.seq, m.last = b.seq, b.last_trade
        for want_buy, rows, stops in ((True, b.bids, b.stop_buys), (False, b.asks, b.stop_sells)):
            for pending, group in ((False, rows), (True, stops)):
                for r in group:
                    acct = ex._accounts.get(r.user)
                    if acct is None:
                        raise ValueError(f"snapshot order {r.oid} belongs to no account")
                    kinds = STOP_TYPES if pending else LIMIT_TYPES
                    if r.kind not in kinds or r.tif not in TIFS or (r.stop > 0) is not pending:
                        raise ValueError(f"snapshot order {r.oid} has a bad type {r.kind!r} or stop {r.stop}")
                    o = Order(
                        r.oid, acct, r.coid, m, want_buy, r.price, r.qty, r.remaining, r.post_only, r.ts,
                        r.reserved, r.kind, r.tif, r.stop, r.expire, r.display,
                    )  # fmt: skip
                    o.visible = r.visible or r.remaining
                    if o.expire:
                        heappush(ex._gtd, (o.expire, o.oid, acct))
                    placed.append((o, pending))
    # Each account indexes its orders in id order; resting them below re-sets the same keys.
    for o, _ in sorted(placed, key=lambda e: e[0].oid):
        if o.oid in o.acct.orders or o.coid in o.acct.coids:
            raise ValueError(f"snapshot order {o.oid} repeats an order id or client_order_id")
        o.acct.orders[o.oid] = o
        o.acct.coids[o.coid] = o.oid
    for o, pending in placed:
        if pending:
            ex._add_stop(o)
        else:
            ex._rest(o)
    problems = ex.audit()
    if problems:
        raise ValueError("inconsistent snapshot: " + "; ".join(problems[:5]))
    return ex


__all__ = ["SNAPSHOT_VERSION", "load", "save"]
