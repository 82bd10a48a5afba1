"""Order rules, in one place: what an order (or an amend) may say, driven by the market's MarketSpec.

The engine is the authority: it rejects a command with the first problem these rules find, as
a ``Rejected`` event carrying the problem's code and reason. The CLI and the TUI order form check
the same rules before they send, so a person sees the rule at once; they word a problem in their
own way, keyed by its code. Nothing here has state, I/O or a clock: the callers pass the time.

A problem is ``(code, reason)``: ``code`` is the engine's machine-readable rejection code,
``reason`` the sentence a person can act on. The rules:

- which fields go together (:func:`order_problems`): side, type and tif from their fixed sets;
  limit and stop-limit orders need a price, as does a stop buy (its protection cap), and other
  orders take none; post-only only on limit types, and only with a tif that rests (gtc, gtd);
  ``stop_price`` exactly with the stop types; ``expire_at`` exactly with tif gtd, which a market
  order cannot have, and after the order's own time;
- per market (:class:`MarketRules`): a quantity is a positive multiple of the lot size within
  ``min_qty``..``max_qty``, a price a positive multiple of the tick size up to ``max_price``; a
  ``display_qty`` (an iceberg) only on a limit order that rests, a lot multiple not above the
  quantity; a stop price that the last trade already meets would trigger at once;
- the edges' own shape of a number (:func:`edge_decimal`) and of an expiry (:func:`expiry_ms`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from stockctl.exchange.units import ASSET_DP, ASSET_SCALE, Step, parse_decimal, show
from stockctl.wire.exchange import MarketSpec

Problem = tuple[str, str]
"""``(code, reason)``: the engine's rejection code and the reason a person can act on."""

ORDER_TYPES: Final = ("limit", "market", "stop", "stop_limit")
LIMIT_TYPES: Final = ("limit", "stop_limit")
"""Types with a limit price (a stop buy's price is its cap, not a limit: it matches as a market order)."""
STOP_TYPES: Final = ("stop", "stop_limit")
TIFS: Final = ("gtc", "ioc", "fok", "gtd")
RESTING_TIFS: Final = ("gtc", "gtd")
"""Only a limit order with one of these ever rests in the book."""
MAX_NAME: Final = 128
"""Longest user name, client order id or request id accepted (bounds what state a command can add)."""
MAX_STEPS: Final = 10**15
"""A market's max price / max quantity may be at most this many ticks / lots."""
CACHE_MAX: Final = 1 << 16
"""Entries a parse or format cache holds before it is cleared."""

_MARKET_PRICE = "a market order takes no price (it fills at the best prices in the book); use a limit order to set one"
_MARKET_POST_ONLY: Final = "post_only applies to limit orders only: a market order always takes liquidity"
_STOP_BUY_PRICE: Final = (
    "a stop buy needs a price: the most it may pay once triggered (its protection cap, and what it reserves)"
)
_NO_PROBLEM: Final[tuple[Problem, ...]] = ()


def takes_price(typ: str, is_buy: bool) -> bool:
    """Whether an order of this type and side has a price: limit types, and a stop buy (its cap)."""
    return typ == "limit" or typ == "stop_limit" or (typ == "stop" and is_buy)


def order_problems(
    coid: object,
    side: object,
    typ: object,
    tif: object,
    post_only: object,
    has_price: bool,
    has_stop: bool,
    expire: object,
    ts: int | None,
    every: bool = False,
) -> tuple[Problem, ...]:
    """What is wrong with how an order's fields go together, in the engine's order: the first
    problem only, or with ``every`` one per field (price, stop price, expiry) after a valid
    client order id, side, type, tif and post_only. ``coid`` is the client_order_id (None: an
    edge that has none yet, not checked); ``expire`` the order's ``expire_at`` (None: not given);
    with ``ts`` None (an edge, before the order has a time) only its presence is checked."""
    if coid is not None and (type(coid) is not str or not coid or len(coid) > MAX_NAME):
        return (("bad_client_order_id", f"client_order_id must be 1 to {MAX_NAME} characters"),)
    if side != "buy" and side != "sell":
        return (("bad_side", f"side must be buy or sell, not {show(side)}"),)
    if typ not in ORDER_TYPES:
        return (("bad_type", f"order type must be limit, market, stop or stop_limit, not {show(typ)}"),)
    if tif not in TIFS:
        return (("bad_tif", f"time in force must be gtc, ioc, fok or gtd, not {show(tif)}"),)
    if post_only is not False and post_only is not True:
        return (("bad_post_only", "post_only must be true or false"),)
    if not has_stop and expire is None and tif != "gtd":  # the common orders, decided without the walk below
        if typ == "limit":
            if has_price and (not post_only or tif == "gtc"):
                return _NO_PROBLEM
        elif typ == "market" and not has_price and not post_only:
            return _NO_PROBLEM
    found: list[Problem] = []
    # The price: which orders need one, and which may not have one.
    if typ == "limit" or typ == "stop_limit":
        if not has_price:
            found.append(("price_required", f"a {typ} order needs a price"))
        elif post_only and tif not in RESTING_TIFS:
            found.append(("post_only_tif", f"a post-only order must be gtc or gtd: as {tif} it could never rest"))
    elif post_only:
        found.append(("post_only_market", _MARKET_POST_ONLY))
    elif typ == "stop" and side == "buy":
        if not has_price:
            found.append(("price_required", _STOP_BUY_PRICE))
    elif has_price:
        found.append(("price_not_allowed", _MARKET_PRICE))
    if found and not every:
        return (found[0],)
    # The stop price: exactly with the stop types.
    if typ == "stop" or typ == "stop_limit":
        if not has_stop:
            found.append(("stop_price_required", f"a {typ} order needs a stop_price"))
    elif has_stop:
        found.append(("stop_price_not_allowed", "stop_price needs type stop or stop_limit"))
    if found and not every:
        return (found[0],)
    # The expiry: exactly with tif gtd, after the order's time.
    if tif == "gtd":
        if typ == "market":
            found.append(("bad_tif", "a market order cannot be gtd: it never rests"))
        elif ts is None:
            if expire is None:
                found.append(("bad_expire_at", "a gtd order needs expire_at (a time: epoch nanoseconds)"))
        elif type(expire) is not int or expire <= 0:
            found.append(("bad_expire_at", "a gtd order needs expire_at (a time: epoch nanoseconds)"))
        elif expire <= ts:
            found.append(("expire_in_past", f"expire_at {expire} is not after the order's time {ts}"))
    elif expire is not None:
        found.append(("bad_expire_at", "expire_at needs tif gtd"))
    if not found:
        return _NO_PROBLEM
    return tuple(found) if every else (found[0],)


def display_problem(typ: object, tif: object) -> Problem | None:
    """A ``display_qty`` (an iceberg) only on an order that rests: a limit gtc or gtd order."""
    if typ != "limit" or tif not in RESTING_TIFS:
        return "display_not_allowed", "display_qty (an iceberg) needs a limit gtc or gtd order"
    return None


def amend_problem(price: object, qty: object, has_price: bool) -> Problem | None:
    """What is wrong with an amend's shape: it changes something, and only a price an order has."""
    if price is None and qty is None:
        return "bad_amend", "nothing to amend: give a new price, a new qty, or both"
    if price is not None and not has_price:
        return "price_not_allowed", "a stop sell has no price to amend (it becomes a market order)"
    return None


class MarketRules:
    """A market's order rules, from its MarketSpec: tick and lot sizes, size limits, max price.

    Raises ValueError, naming the market, for a spec that is not a market: tick and lot sizes
    must be positive decimals with at most ``ASSET_DP`` decimals, one tick times one lot a whole
    number of quote units (``qtl``, so fills settle exactly), one lot a whole number of base
    units (``bpl``), and min/max quantity and max price positive multiples of their step."""

    __slots__ = (
        "bpl",
        "lot",
        "max_lots",
        "max_ticks",
        "min_lots",
        "price_cache",
        "qtl",
        "qty_cache",
        "spec",
        "symbol",
        "tick",
    )

    def __init__(self, spec: MarketSpec) -> None:
        sym = spec.symbol
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
        self.tick = tick
        self.lot = lot
        self.qtl = qtl  # quote units per (1 tick x 1 lot)
        self.bpl = lot.num * 10 ** (ASSET_DP - lot.dp)  # base units per lot
        self.min_lots = self._steps(spec.min_qty, lot, "min_qty")
        self.max_lots = self._steps(spec.max_qty, lot, "max_qty")
        self.max_ticks = self._steps(spec.max_price, tick, "max_price")
        if self.min_lots > self.max_lots:
            raise ValueError(f"{sym}: min_qty {spec.min_qty} is above max_qty {spec.max_qty}")
        # Valid texts already parsed (cleared when large), for a caller that looks here first
        # (the engine, on its hot path). They never change an answer.
        self.qty_cache: dict[str, int] = {}
        self.price_cache: dict[str, int] = {}

    def _steps(self, text: str, step: Step, name: str) -> int:
        parsed = parse_decimal(text)
        k = step.count(*parsed) if parsed is not None else None
        if not k or k > MAX_STEPS:
            raise ValueError(f"{self.symbol}: {name} {show(text)} must be a positive multiple of {step.text}")
        return k

    def qty(self, text: object) -> tuple[int, None] | tuple[None, Problem]:
        """A quantity in lots, or its problem (``bad_qty``, ``lot_size``, ``min_qty``, ``max_qty``)."""
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
        if len(self.qty_cache) >= CACHE_MAX:
            self.qty_cache.clear()
        self.qty_cache[text] = lots  # type: ignore[index]
        return lots, None

    def price(self, text: object) -> tuple[int, None] | tuple[None, Problem]:
        """A price in ticks, or its problem (``bad_price``, ``tick_size``, ``price_range``)."""
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
            return None, ("price_range", f"price {text} is above the maximum {self.spec.max_price} for {self.symbol}")
        if len(self.price_cache) >= CACHE_MAX:
            self.price_cache.clear()
        self.price_cache[text] = ticks  # type: ignore[index]
        return ticks, None

    def stop_price(self, text: object) -> tuple[int, None] | tuple[None, Problem]:
        """A stop price in ticks (the price rules), or its problem (``stop_tick_size``, ``bad_stop_price``)."""
        ticks, problem = self.price(text)
        if problem is not None:
            code, why = problem
            return None, ("stop_tick_size" if code == "tick_size" else "bad_stop_price", "stop " + why)
        assert ticks is not None
        return ticks, None

    def display(
        self, text: object, typ: object, tif: object, lots: int | None, qty_text: object
    ) -> tuple[int, None] | tuple[None, Problem]:
        """An iceberg's ``display_qty`` in lots, or its problem (``display_not_allowed``,
        ``bad_display_qty``, ``display_lot_size``, ``display_above_qty``); ``lots`` is the order's
        quantity (None: not known, so not compared)."""
        bad = display_problem(typ, tif)
        if bad is not None:
            return None, bad
        parsed = parse_decimal(text)
        if parsed is None or parsed[0] == 0:
            return None, ("bad_display_qty", f"display_qty {show(text)} must be a plain decimal above zero")
        display = self.lot.count(*parsed)
        if display is None:
            return None, (
                "display_lot_size",
                f"display_qty {text} is not a multiple of the lot size {self.spec.lot_size}",
            )
        if lots is not None and display > lots:
            return None, ("display_above_qty", f"display_qty {text} is above the order's quantity {qty_text}")
        return display, None

    def trigger_problem(self, typ: str, is_buy: bool, stop: int, last: int | None) -> Problem | None:
        """A stop the last trade already meets would trigger at once: that is a plain order's job."""
        if last is not None and (last >= stop if is_buy else last <= stop):
            return "would_trigger", (
                f"the last trade {self.tick.format(last)} already meets stop_price {self.tick.format(stop)}: it would"
                f" trigger at once; place a {'limit' if typ == 'stop_limit' else 'market'} order instead"
            )
        return None

    def filled_problem(self, qty: int, filled: int) -> Problem | None:
        """An amend's new total quantity must stay above what is already filled."""
        if qty <= filled:
            return "bad_qty", (
                f"the new quantity {self.lot.format(qty)} is not above what is already filled"
                f" ({self.lot.format(filled)}): cancel the order instead"
            )
        return None


def rules_for(doc: Mapping[str, Any] | None) -> MarketRules | None:
    """A market's rules from its JSON (a MarketSpec as the gateway serves it), or None when the
    document is missing or not a whole, valid spec (then only the shape of numbers is checkable)."""
    if not doc:
        return None
    try:
        spec = MarketSpec(
            symbol=str(doc.get("symbol", "")),
            base=str(doc.get("base", "")),
            quote=str(doc.get("quote", "")),
            tick_size=str(doc["tick_size"]),
            lot_size=str(doc["lot_size"]),
            min_qty=str(doc["min_qty"]),
            max_qty=str(doc["max_qty"]),
            max_price=str(doc["max_price"]),
        )
        return MarketRules(spec)
    except (KeyError, ValueError):
        return None


# --- the edges' shapes ---------------------------------------------------------------------

_EDGE_DECIMAL = re.compile(r"\d{1,15}(\.\d{1,8})?", re.ASCII)


def edge_decimal(text: str) -> bool:
    """Whether ``text`` is a positive plain decimal as a person types one at the CLI or in the TUI:
    at most 15 digits before the point and 8 after (the asset precision), not zero."""
    return _EDGE_DECIMAL.fullmatch(text) is not None and parse_decimal(text)[0] != 0  # type: ignore[index]


_RELATIVE = re.compile(r"\+(\d{1,9})([smhd])", re.ASCII)
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def expiry_ms(text: str, now_ms: int) -> str | int:
    """An expiry as typed: ``+30s`` / ``+5m`` / ``+2h`` / ``+1d`` from ``now_ms`` (as epoch ms), epoch
    ms, or an RFC 3339 time passed through (the gateway parses it and says what is wrong with it).
    Raises ValueError, saying what to write instead, for anything else."""
    text = text.strip()
    rel = _RELATIVE.fullmatch(text)
    if rel:
        return now_ms + int(rel.group(1)) * _UNIT_MS[rel.group(2)]
    if text.isascii() and text.isdigit():
        return int(text)
    if not text or "T" not in text.upper():
        raise ValueError(
            f"bad expiry {text[:40]!r}; give +30s, +5m, +2h, epoch milliseconds, or a time like 2030-01-02T15:04:05Z"
        )
    return text


__all__ = [
    "CACHE_MAX",
    "LIMIT_TYPES",
    "MAX_NAME",
    "MAX_STEPS",
    "ORDER_TYPES",
    "RESTING_TIFS",
    "STOP_TYPES",
    "TIFS",
    "MarketRules",
    "Problem",
    "amend_problem",
    "display_problem",
    "edge_decimal",
    "expiry_ms",
    "order_problems",
    "rules_for",
    "takes_price",
]
