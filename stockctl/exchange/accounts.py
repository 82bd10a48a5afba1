"""Accounts of the engine: balances per asset, what open orders hold, and the reservation rule.

Every account holds, per asset, ``avail`` and ``held`` (reserved) integer amounts in 1e-8 units;
held is exactly what its open orders may still spend. What an order holds (:func:`hold_for`) is
the one reservation rule: a buy ``notional + floor(notional * bps / 10000)`` quote for its lots
at its price, with ``bps = max(taker, maker)`` (it may end up on either side), a sell its lots
in base. An account exists once funded (:func:`fund_credits` checks a ``Fund``'s amounts); the
fee account ``__fees__`` receives every fee and is no user's. Pure data and arithmetic: the
engine moves the amounts, these say how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from stockctl.exchange.units import ASSET_DP, ASSET_SCALE, asset_units, fmt_amount, parse_decimal, show
from stockctl.exchange.validation import MAX_NAME, Problem

if TYPE_CHECKING:
    from stockctl.exchange.book import Market, Order

FEE_ACCOUNT: Final = "__fees__"
"""The account fees are paid to; no command may act as this user."""
BPS: Final = 10_000
MAX_FUND_UNITS: Final = 10**12 * ASSET_SCALE
"""Largest single Fund amount of one asset (a trillion): anything above is bad input."""


class Account:
    """One user's balances and open orders."""

    __slots__ = ("avail", "coids", "held", "orders", "user")

    def __init__(self, user: str, assets: Sequence[str]) -> None:
        self.user = user
        self.avail: dict[str, int] = dict.fromkeys(assets, 0)
        self.held: dict[str, int] = dict.fromkeys(assets, 0)
        self.orders: dict[int, Order] = {}  # open orders (resting or pending stops), by id, in id order
        self.coids: dict[str, int] = {}  # client_order_id -> id of the open order using it


def bad_user(user: str) -> str | None:
    """Why ``user`` cannot be an account's name, or None."""
    if not user or len(user) > MAX_NAME:
        return f"user must be a name of 1 to {MAX_NAME} characters"
    if user == FEE_ACCOUNT:
        return f"user {user!r} is reserved"
    return None


def hold_for(m: Market, is_buy: bool, ticks: int, lots: int, bps: int) -> int:
    """What an order of ``lots`` at ``ticks`` holds: a buy its notional plus the fee it may pay
    (``bps``), in quote; a sell its lots, in base."""
    if not is_buy:
        return lots * m.bpl
    notional = ticks * lots * m.qtl
    return notional + notional * bps // BPS


def release(o: Order) -> None:
    """Free what an open order holds and forget it: it is no longer open."""
    acct = o.acct
    if o.reserved:
        asset = o.market.quote if o.is_buy else o.market.base
        acct.held[asset] -= o.reserved
        acct.avail[asset] += o.reserved
        o.reserved = 0
    del acct.orders[o.oid]
    del acct.coids[o.coid]


def funds_reason(m: Market, cost: int, have: int, bps: int, base_units: int = 0) -> str:
    """Why an order's funds fall short: ``base_units`` of base for a sell, else ``cost`` quote
    notional plus its fee reserve at ``bps``, against ``have`` available."""
    if base_units:
        b = m.base
        need, avail = fmt_amount(base_units), fmt_amount(have)
        return f"insufficient {b}: the order needs {need} {b} but {avail} {b} is available"
    q = m.quote
    fee = cost * bps // BPS
    fee_part = f" plus up to {fmt_amount(fee)} {q} fee" if fee else ""
    return (
        f"insufficient {q}: the order needs {fmt_amount(cost + fee)} {q} ({fmt_amount(cost)} {q} at its limit"
        f" price{fee_part}) but {fmt_amount(have)} {q} is available"
    )


def shortfall(m: Market, is_buy: bool, ticks: int, lots: int, have: int, bps: int) -> tuple[int, str | None]:
    """``(need, reason)``: what the order holds (:func:`hold_for`) and, if ``have`` does not cover
    it, why not (a ``funds`` rejection's reason), else None."""
    need = hold_for(m, is_buy, ticks, lots, bps)
    if need <= have:
        return need, None
    if is_buy:
        return need, funds_reason(m, ticks * lots * m.qtl, have, bps)
    return need, funds_reason(m, 0, have, bps, need)


def fund_credits(
    amounts: dict[object, object], assets: Sequence[str]
) -> tuple[dict[str, int], None] | tuple[None, Problem]:
    """A Fund's amounts in 1e-8 units, or the problem (``bad_amount``, ``unknown_asset``) with them."""
    if not amounts:
        return None, ("bad_amount", "nothing to fund: amounts is empty")
    credits: dict[str, int] = {}
    for asset, text in amounts.items():
        if type(asset) is not str or asset not in assets:
            return None, ("unknown_asset", f"unknown asset {show(asset)}: known assets are {', '.join(assets)}")
        parsed = parse_decimal(text)
        units = asset_units(*parsed) if parsed is not None else None
        if units is None or units <= 0 or units > MAX_FUND_UNITS:
            return None, (
                "bad_amount",
                f"amount {show(text)} of {asset} must be a plain decimal above zero, at most"
                f" {fmt_amount(MAX_FUND_UNITS)}, with at most {ASSET_DP} decimals",
            )
        credits[asset] = units
    return credits, None


__all__ = [
    "BPS",
    "FEE_ACCOUNT",
    "MAX_FUND_UNITS",
    "Account",
    "bad_user",
    "fund_credits",
    "funds_reason",
    "hold_for",
    "release",
    "shortfall",
]
