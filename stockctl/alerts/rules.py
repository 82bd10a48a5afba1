"""Price alerts: wire types, request validation and the evaluation index. Pure: no I/O here.

An alert watches one symbol:

* ``above PRICE`` fires on the first quote at or above PRICE;
* ``below PRICE`` fires on the first quote at or below PRICE;
* ``cross-sma`` fires on the next SMA crossover signal (with ``side`` buy or sell: the next
  one of that kind).

Only quotes and signals that come after the alert was created count: an alert records the
symbol's quote sequence number and time when it was made. So an alert set while the price
is already beyond it fires on the next tick, and a daemon that replays stored history
after a restart neither misses a crossing nor fires on one older than the alert.
Thresholds are exact decimal strings; comparisons use integer units (:mod:`stockctl.marketdata.money`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from stockctl.errors import UsageError
from stockctl.marketdata.money import PriceError, from_units, to_units
from stockctl.wire.symbols import parse_symbol

Condition = Literal["above", "below", "cross-sma"]
CONDITIONS: tuple[str, ...] = ("above", "below", "cross-sma")
SIDES: tuple[str, ...] = ("buy", "sell")

FIRED_KEPT = 100
"""Fired alerts kept per user (the oldest are dropped)."""

MAX_DISTANCE = 1000
"""A threshold more than this many times above or below the last price is taken for a typo."""

_CONDITIONS_HINT = "conditions: above PRICE, below PRICE, cross-sma (optionally side buy or sell)"


class AlertIn(msgspec.Struct, forbid_unknown_fields=True):
    """An alert as a client asks for it (REST body of ``POST /api/v1/alerts``)."""

    symbol: str
    condition: str
    threshold: str | int | float | None = None
    """A decimal string such as ``"200.5"`` (an integer is accepted; a JSON float is not exact)."""
    side: str | None = None


class Alert(msgspec.Struct, frozen=True):
    """One alert as stored in Redis, listed over REST and delivered when it fires."""

    id: int
    user: str
    symbol: str
    condition: Condition
    created: int
    """When it was made, ns since the epoch."""
    threshold: str | None = None
    side: Literal["buy", "sell"] | None = None
    after_seq: int = 0
    """The symbol's quote sequence number when the alert was made: only later ones count."""
    after_ts: int = 0
    """The time of that quote (ns): a later quote counts even if the sequence started again."""
    status: Literal["active", "fired"] = "active"
    fired_ts: int | None = None
    """When the alerts daemon fired it, ns since the epoch."""
    fired_price: str | None = None
    fired_seq: int | None = None
    """Sequence number of the quote or signal that fired it."""
    signal: Literal["BUY", "SELL"] | None = None
    """The crossover that fired a ``cross-sma`` alert."""


class AlertChange(msgspec.Struct, frozen=True):
    """On ``alert.changed``: the gateway added or removed an alert."""

    op: Literal["add", "rm"]
    id: int
    user: str


class AlertAdded(msgspec.Struct):
    """The answer to adding an alert: the alert, the symbol's last price, and a note if it is already met."""

    alert: Alert
    last_price: str
    note: str | None = None


class AlertList(msgspec.Struct):
    """A user's alerts: the active ones (by id) and the recently fired ones (oldest first)."""

    active: list[Alert]
    fired: list[Alert]


encode = msgspec.json.Encoder().encode
alert_decoder = msgspec.json.Decoder(Alert)
change_decoder = msgspec.json.Decoder(AlertChange)
alert_in_decoder = msgspec.json.Decoder(AlertIn)


# --- validation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertSpec:
    """A validated request: normalised symbol, condition, exact threshold (string and units), side."""

    symbol: str
    condition: Condition
    threshold: str | None = None
    units: int | None = None
    side: Literal["buy", "sell"] | None = None


def parse_request(req: AlertIn) -> AlertSpec:
    """Check a request's shape; raise UsageError naming the first problem and the fix.

    Whether the symbol exists and how far the threshold is from its price need the
    market data, so :func:`check_distance` and the store do those.
    """
    symbol = parse_symbol(req.symbol)
    condition = req.condition.strip().lower()
    if condition not in CONDITIONS:
        raise UsageError(f"bad condition {req.condition[:40]!r}", _CONDITIONS_HINT)
    side = req.side.strip().lower() if req.side is not None else None
    if condition == "cross-sma":
        if req.threshold is not None:
            raise UsageError("cross-sma takes no price", "it fires on the next SMA crossover; give side buy or sell")
        if side is not None and side not in SIDES:
            raise UsageError(f"bad side {side[:20]!r}", "side is buy or sell (or leave it out for either)")
        return AlertSpec(symbol, "cross-sma", side=side)  # type: ignore[arg-type]
    if side is not None:
        raise UsageError(f"side applies to cross-sma only, not to {condition}")
    units = parse_threshold(req.threshold)
    return AlertSpec(symbol, condition, from_units(units), units)  # type: ignore[arg-type]


def parse_threshold(value: str | int | float | None) -> int:
    """An exact threshold in units; UsageError for a missing, float, NaN, negative, zero or absurd one."""
    if value is None:
        raise UsageError("above and below need a price", "e.g. `alert add AAPL above 200`")
    if isinstance(value, float):
        raise UsageError(
            f"give the price as a decimal string, not the JSON number {value!r}", 'e.g. "200.10": a float is not exact'
        )
    text = str(value)
    try:
        return to_units(text)
    except PriceError as exc:
        raise UsageError(f"bad price: {exc}", "e.g. 200.5") from None


def check_distance(spec: AlertSpec, last_price: str | None) -> None:
    """UsageError when the threshold is more than :data:`MAX_DISTANCE` times off the last price."""
    if spec.units is None or not last_price:
        return
    last = to_units(last_price)
    if spec.units > last * MAX_DISTANCE or spec.units * MAX_DISTANCE < last:
        raise UsageError(
            f"price {spec.threshold} is absurdly far from {spec.symbol}'s last price {last_price}",
            f"give a price within {MAX_DISTANCE}x of it",
        )


def already_met(spec: AlertSpec, last_price: str | None) -> bool:
    """True when the last price already satisfies an above/below alert (it fires on the next tick)."""
    if spec.units is None or not last_price:
        return False
    last = to_units(last_price)
    return last >= spec.units if spec.condition == "above" else last <= spec.units


def describe(alert: Alert | AlertSpec) -> str:
    """``AAPL above 200.00``, ``AAPL cross-sma``, ``AAPL cross-sma buy``."""
    if alert.condition == "cross-sma":
        return f"{alert.symbol} cross-sma" + (f" {alert.side}" if alert.side else "")
    return f"{alert.symbol} {alert.condition} {alert.threshold}"


def is_after(alert: Alert, ts: int, seq: int) -> bool:
    """Whether a quote or signal (``ts``, ``seq``) came after the alert was created."""
    return seq > alert.after_seq or ts > alert.after_ts


def fired(alert: Alert, price: str, seq: int, now_ns: int, signal: Literal["BUY", "SELL"] | None = None) -> Alert:
    """The alert as it is recorded once it fired."""
    return msgspec.structs.replace(
        alert, status="fired", fired_ts=now_ns, fired_price=price, fired_seq=seq, signal=signal
    )


# --- evaluation ---------------------------------------------------------------------------

_LAST = 1 << 62  # sorts after every alert id


@dataclass
class _SymbolAlerts:
    above: list[tuple[int, int]] = field(default_factory=list)  # (threshold units, id), ascending
    below: list[tuple[int, int]] = field(default_factory=list)
    cross: dict[int, Alert] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.above or self.below or self.cross)


class AlertIndex:
    """Active alerts by symbol, thresholds kept sorted.

    A quote finds the alerts it triggers by bisection (O(log n + k)), so a popular symbol
    with many alerts costs little per tick. It only answers what triggers; the caller
    fires the alerts and then :meth:`discard` s them.
    """

    def __init__(self, alerts: Iterable[Alert] = ()) -> None:
        self.alerts: dict[int, Alert] = {}
        self._by_symbol: dict[str, _SymbolAlerts] = {}
        for alert in alerts:
            self.add(alert)

    def __len__(self) -> int:
        return len(self.alerts)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self.alerts

    def watches(self, symbol: str) -> bool:
        """True when some active alert is about ``symbol`` (cheap: checked before decoding a quote)."""
        return symbol in self._by_symbol

    def symbols(self) -> set[str]:
        return set(self._by_symbol)

    def add(self, alert: Alert) -> None:
        if alert.status != "active":
            return
        self.discard(alert.id)
        self.alerts[alert.id] = alert
        sa = self._by_symbol.setdefault(alert.symbol, _SymbolAlerts())
        if alert.condition == "cross-sma":
            sa.cross[alert.id] = alert
        else:
            assert alert.threshold is not None
            side = sa.above if alert.condition == "above" else sa.below
            bisect.insort(side, (to_units(alert.threshold), alert.id))

    def discard(self, alert_id: int) -> Alert | None:
        alert = self.alerts.pop(alert_id, None)
        if alert is None:
            return None
        sa = self._by_symbol[alert.symbol]
        if alert.condition == "cross-sma":
            sa.cross.pop(alert_id, None)
        else:
            assert alert.threshold is not None
            side = sa.above if alert.condition == "above" else sa.below
            key = (to_units(alert.threshold), alert_id)
            i = bisect.bisect_left(side, key)
            if i < len(side) and side[i] == key:
                del side[i]
        if not sa:
            del self._by_symbol[alert.symbol]
        return alert

    def on_price(self, symbol: str, units: int, ts: int, seq: int) -> list[Alert]:
        """Active above/below alerts of ``symbol`` that a price of ``units`` at (ts, seq) triggers, by id."""
        sa = self._by_symbol.get(symbol)
        if sa is None:
            return []
        hits = sa.above[: bisect.bisect_right(sa.above, (units, _LAST))]  # threshold <= price
        hits += sa.below[bisect.bisect_left(sa.below, (units, -1)) :]  # threshold >= price
        out = [self.alerts[i] for _, i in hits]
        return sorted((a for a in out if is_after(a, ts, seq)), key=lambda a: a.id)

    def on_signal(self, symbol: str, side: str, ts: int, seq: int) -> list[Alert]:
        """Active cross-sma alerts of ``symbol`` that a ``side`` (BUY/SELL) crossover at (ts, seq) triggers."""
        sa = self._by_symbol.get(symbol)
        if sa is None or not sa.cross:
            return []
        want = side.lower()
        return sorted(
            (a for a in sa.cross.values() if (a.side is None or a.side == want) and is_after(a, ts, seq)),
            key=lambda a: a.id,
        )

    def replace(self, alerts: Iterable[Alert]) -> set[int]:
        """Make the index hold exactly ``alerts``; the ids that were not in it before."""
        fresh = {a.id: a for a in alerts if a.status == "active"}
        for gone in set(self.alerts) - set(fresh):
            self.discard(gone)
        new = set(fresh) - set(self.alerts)
        for alert_id in new:
            self.add(fresh[alert_id])
        return new
