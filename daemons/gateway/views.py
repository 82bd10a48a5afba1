"""What one user may see of an exchange event.

The engine's events name both sides of a trade. Every event that leaves the gateway for a user
(a command's answer, the ``orders`` channel, fills) passes here first:

* :func:`own_view`: of a trade, only the user's own side keeps its user, order ids and fee;
* :func:`concerns`: whether an event of a command's outcome is the user's business at all;
* :func:`fill_view`: a stored trade as one side's fill.

Pure functions of plain JSON documents.
"""

from __future__ import annotations

from typing import Any

PRIVATE_TRADE_FIELDS = ("user", "order_id", "client_order_id", "remaining", "fee")


def own_view(event: dict[str, Any], user: str) -> dict[str, Any]:
    """An event as ``user`` may see it: of a trade, only their own side's user, order and fee.

    The engine's trade names both sides; a counterparty's email, order ids and fee are
    nobody else's business, so every event leaving the gateway for a user passes here.
    """
    if event.get("event") != "trade":
        return event
    out = dict(event)
    for side in ("maker", "taker"):
        if out.get(f"{side}_user") != user:
            for name in PRIVATE_TRADE_FIELDS:
                out.pop(f"{side}_{name}", None)
    return out


def concerns(event: dict[str, Any], user: str) -> bool:
    """Whether an event of a command's outcome is ``user``'s business. A command can also expire
    others' good-till-date orders and trigger others' stops: their events reach their owners on
    the ``orders`` channel, never the answer to someone else's request. Trades stay (own_view
    strips what is not the user's)."""
    return event.get("event") == "trade" or event.get("user") == user


def fill_view(user: str, t: dict[str, Any]) -> dict[str, Any]:
    """A trade from one side's point of view."""
    taker = t["taker_user"] == user
    side = t["taker_side"] if taker else ("sell" if t["taker_side"] == "buy" else "buy")
    return {
        "ts": t["ts"],
        "market": t["market"],
        "side": side,
        "qty": t["qty"],
        "price": t["price"],
        "fee": t["taker_fee"] if taker else t["maker_fee"],
        "liquidity": "taker" if taker else "maker",
        "order_id": t["taker_order_id"] if taker else t["maker_order_id"],
        "client_order_id": t["taker_client_order_id"] if taker else t["maker_client_order_id"],
        "trade_id": t["trade_id"],
    }
