"""An order's state as its owner sees it, and the cursor pages of the REST lists.

:func:`order_state` answers ``GET /api/v1/orders/{id}`` and each row of the order list: status
(:data:`~stockctl.wire.gateway.ORDER_STATUSES`), quantity, remaining and filled quantity, the
average price of its fills. An open order comes from matching's answer (its ``remaining`` is
the engine's own); a finished one from the user's order events in the Redis views (accepted,
amended, triggered, cancelled) and their fills. Only the user's own lists are read, so
someone else's order id is simply not found.

:func:`page` is the one paging rule of fills, orders and trades, the same as history's:
without a range or cursor the latest ``limit`` items; with ``since``/``from``/``until`` or
``after`` (an id) the first ``limit`` of the range, oldest first, and the id of the last one
as the next page's cursor when the page is full.

Pure functions of plain JSON documents; money in :class:`~decimal.Decimal`, never float.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

from daemons.gateway.views import fill_view
from stockctl.errors import UsageError

T = TypeVar("T")
AVG_QUANTUM = Decimal("1e-8")  # the engine's smallest unit: an average finer than that is noise


def _fills_of(user: str, order_id: int, trades: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in (fill_view(user, t) for t in trades) if f["order_id"] == order_id]


def avg_price(fills: list[dict[str, Any]]) -> str | None:
    """The quantity-weighted average price of ``fills`` (exact, rounded to 1e-8), None without any."""
    qty = sum((Decimal(f["qty"]) for f in fills), Decimal(0))
    if not qty:
        return None
    value = sum((Decimal(f["qty"]) * Decimal(f["price"]) for f in fills), Decimal(0)) / qty
    return format(value.quantize(AVG_QUANTUM, ROUND_HALF_EVEN).normalize(), "f")


def open_state(view: dict[str, Any], fills: list[dict[str, Any]]) -> dict[str, Any]:
    """An open order (matching's view of it) with its filled quantity, average price and status."""
    filled = Decimal(view["qty"]) - Decimal(view["remaining"])
    status = "pending" if view.get("status") == "pending" else "partially_filled" if filled else "open"
    return {**view, "filled_qty": format(filled, "f"), "avg_price": avg_price(fills), "status": status}


def finished_state(events: list[dict[str, Any]], fills: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A finished order from its own events, oldest first (None without its ``accepted``)."""
    accepted = next((e for e in events if e.get("event") == "accepted"), None)
    if accepted is None:
        return None
    state: dict[str, Any] = {
        k: accepted.get(k)
        for k in ("order_id", "client_order_id", "market", "side", "tif", "post_only", "qty", "price", "ts")
    }
    state["type"] = accepted["order_type"]
    for k in ("stop_price", "expire_at", "display_qty"):
        if accepted.get(k) is not None:
            state[k] = accepted[k]
    cancelled = None
    for e in events:
        if e.get("event") == "amended":
            state["qty"], state["price"] = e["new_qty"], e["new_price"]
        elif e.get("event") == "cancelled":
            cancelled = e
    qty = Decimal(state["qty"])
    # A finished order has nothing left to fill: `remaining` is 0 (FIX's LeavesQty), and what a
    # cancel took off the book is `cancelled_qty`.
    unfilled = Decimal(cancelled["remaining"]) if cancelled is not None else qty - qty  # "0" in qty's places
    filled = qty - unfilled
    if cancelled is None:
        status = "filled"
    else:
        status = "partially_filled_cancelled" if filled else "cancelled"
        state["reason"] = cancelled["reason"]
        state["cancelled_qty"] = format(unfilled, "f")
    return state | {
        "remaining": format(qty - qty, "f"),
        "filled_qty": format(filled, "f"),
        "avg_price": avg_price(fills),
        "status": status,
    }


def order_state(
    user: str,
    order_id: int,
    opens: list[dict[str, Any]],
    history: list[dict[str, Any]],
    trades: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """The order ``order_id`` of ``user``: open (in ``opens``) or finished (in ``history``), else None."""
    fills = _fills_of(user, order_id, trades)
    mine = next((o for o in opens if o["order_id"] == order_id), None)
    if mine is not None:
        return open_state(mine, fills)
    return finished_state([e for e in history if e.get("order_id") == order_id], fills)


def fills_by_order(user: str, trades: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """``user``'s fills grouped by their order id."""
    out: dict[int, list[dict[str, Any]]] = {}
    for t in trades:
        f = fill_view(user, t)
        out.setdefault(f["order_id"], []).append(f)
    return out


def parse_after(after: str | None) -> int | None:
    """An ``after`` cursor: the id of the last item of the previous page."""
    if after is None:
        return None
    if not (after.isdigit() and len(after) <= 19):
        raise UsageError(f"bad cursor {after[:40]!r}", "give the id of the previous page's last item (X-Next-After)")
    return int(after)


def page(
    items: list[T],
    ts: Callable[[T], int],
    ident: Callable[[T], int],
    lo: int | None,
    hi: int | None,
    after: int | None,
    limit: int,
) -> tuple[list[T], str | None]:
    """One page of ``items`` (ordered by id here), and the next page's cursor if it is full and ranged."""
    ordered = sorted(items, key=ident)
    if lo is None and hi is None and after is None:
        return ordered[-limit:], None
    chosen = [
        x
        for x in ordered
        if (lo is None or ts(x) >= lo) and (hi is None or ts(x) < hi) and (after is None or ident(x) > after)
    ][:limit]
    return chosen, (str(ident(chosen[-1])) if len(chosen) == limit else None)
