"""Small factories and independent arithmetic shared by the engine tests
(``tests/unit/test_engine_arithmetic.py`` checks that arithmetic by hand).

Amounts are computed here from decimal strings with integer arithmetic of their own, never
with the engine's helpers: 1 unit is 1e-8 of an asset, a TATA_INR lot is 1 share, a tick 0.05.
"""

from __future__ import annotations

from typing import Any

from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import Cancel, CancelAll, Event, Fund, Place
from tests.support.arithmetic import SCALE, units_of

MKT = "TATA_INR"
BPS = 10_000


def units(text: str) -> int:
    """A decimal string in 1e-8 units."""
    return units_of(text)


def notional(price: str, qty: int) -> int:
    """Quote units paid for ``qty`` whole shares at ``price``."""
    return units_of(price) * qty


def fee(amount: int, bps: int) -> int:
    """Fee in units: ``bps`` of ``amount``, rounded down."""
    return amount * bps // BPS


def shares(n: int) -> int:
    return n * SCALE


def fund(ex: Exchange, user: str, inr: str = "1000000", tata: str = "1000", jio: str = "1000", ts: int = 0) -> None:
    out = ex.apply(Fund(user, f"fund-{user}", {"INR": inr, "TATA": tata, "JIO": jio}, ts))
    assert type(out[0]).__name__ == "Funded", out


def funded(*users: str) -> Exchange:
    """A fresh exchange in which each of ``users`` is funded with :func:`fund`'s defaults."""
    ex = Exchange()
    for user in users:
        fund(ex, user)
    return ex


def limit(
    user: str,
    side: str,
    qty: str | int,
    price: str,
    coid: str | None = None,
    *,
    market: str = MKT,
    tif: str = "gtc",
    post_only: bool = False,
    ts: int = 1,
) -> Place:
    return Place(
        user,
        coid or f"{user}-{side}-{qty}@{price}",
        market,
        side,  # type: ignore[arg-type]
        "limit",
        str(qty),
        ts,
        price=price,
        tif=tif,  # type: ignore[arg-type]
        post_only=post_only,
    )


def market(user: str, side: str, qty: str | int, coid: str | None = None, *, tif: str = "gtc", ts: int = 1) -> Place:
    return Place(user, coid or f"{user}-m{side}-{qty}", MKT, side, "market", str(qty), ts, tif=tif)  # type: ignore[arg-type]


def cancel(user: str, order_id: int, market_: str = MKT, ts: int = 1) -> Cancel:
    return Cancel(user, f"cx-{order_id}", market_, order_id, ts)


def cancel_all(user: str, market_: str = MKT, ts: int = 1) -> CancelAll:
    return CancelAll(user, f"cxall-{user}", market_, ts)


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def only(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if type(e).__name__ == kind]


def avail(ex: Exchange, user: str, asset: str) -> int:
    return units(ex.balances(user)[asset][0])


def held(ex: Exchange, user: str, asset: str) -> int:
    return units(ex.balances(user)[asset][1])


def total(ex: Exchange, user: str, asset: str) -> int:
    return avail(ex, user, asset) + held(ex, user, asset)
