"""Market groups: which markets and which assets each active matching daemon holds.

``STOCKCTL_MARKET_GROUPS`` (``inr=TATA_INR,JIO_INR;us=AAPL_USD,MSFT_USD``) splits the
exchange's markets into groups; each group is an engine of its own, led by its own active
matching daemon (with its own lease, term, snapshot and command stream subjects), so groups
match in parallel and one group's failover leaves the others trading. Unset, there is one
group, ``main``, holding every market: the exchange as it always was, under the same names.

How balances stay correct across groups: **every asset belongs to exactly one group**. A
trade moves only its market's two assets and an order holds only one of them, so when every
asset lives in one group, every balance change an order can cause is inside one engine, one
leader and one ordered stream: nothing ever crosses groups, and there is nothing to reconcile.
A user's balances are the union of each group's (disjoint) assets; a funding is split by asset.
exchange-core's split (risk shards by user ahead of matching shards by symbol) would also allow
markets that share an asset to be in different groups, at the cost of a second sequenced stage
on every order (hold in risk, match, settle back in risk) and its own recovery. Markets that
share an asset (``TATA_INR`` and ``JIO_INR`` share ``INR``) must therefore be in one group, and
:func:`market_groups` refuses a layout that splits them, naming the asset.

Order and trade ids stay unique across the exchange: group ``i`` of ``n`` numbers them
``i+1, i+1+n, ...`` (:attr:`Group.first_id`, :attr:`MarketGroups.id_step`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from stockctl.exchange.book import ACCOUNTS
from stockctl.wire.exchange import MarketSpec

MAIN = "main"
"""The one group of an exchange without ``STOCKCTL_MARKET_GROUPS``."""
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class GroupsError(ValueError):
    """``STOCKCTL_MARKET_GROUPS`` does not describe a usable split of the configured markets."""


@dataclass(frozen=True)
class Group:
    """One market group: its markets (in the markets file's order) and the assets they trade."""

    name: str
    index: int
    markets: tuple[MarketSpec, ...]
    assets: tuple[str, ...]

    @property
    def accounts_market(self) -> str:
        """The pseudo-market this group's account events go to (``ACCOUNTS`` for ``main``)."""
        return ACCOUNTS if self.name == MAIN else f"{ACCOUNTS}-{self.name.upper()}"

    @property
    def first_id(self) -> int:
        return self.index + 1

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(spec.symbol for spec in self.markets)


@dataclass(frozen=True)
class MarketGroups:
    """Every group, in the order configured; each market and asset in exactly one."""

    groups: tuple[Group, ...]

    @property
    def id_step(self) -> int:
        return len(self.groups)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def of_market(self, symbol: str) -> Group | None:
        """The group that matches ``symbol`` (its accounts market included), or None."""
        return next((g for g in self.groups if symbol in g.symbols or symbol == g.accounts_market), None)

    def named(self, name: str) -> Group:
        return next(g for g in self.groups if g.name == name)

    def of_instance(self, n: int) -> Group:
        """The group that matching instance ``n`` (1, 2, ...) serves: instances take the groups in
        turn, so ``matching-1`` and ``matching-3`` serve the first of two groups."""
        return self.groups[(n - 1) % len(self.groups)]

    def asked(self, what: str, payload: dict[str, Any]) -> tuple[Group, ...]:
        """The groups a matching query goes to: the market's group when it names one (an unknown
        market goes to the first, which answers ``bad_query``), otherwise every group."""
        market = payload.get("market")
        if isinstance(market, str) and market:
            return (self.of_market(market) or self.groups[0],)
        return self.groups if what in MERGED else self.groups[:1]

    def layout(self) -> str:
        """The layout as one canonical line (what the exchange records, and compares at start)."""
        return ";".join(f"{g.name}={','.join(g.symbols)}" for g in self.groups)


MERGED = ("balances", "orders", "markets")
"""Queries every group answers for its part: the parts are merged into the one answer."""


def merge(what: str, answers: Sequence[bytes]) -> bytes:
    """One answer from every group's (see :meth:`MarketGroups.asked`): balances side by side
    (each group has its own assets), open orders by order id, markets in group order. An error
    answer from any group is the answer."""
    if len(answers) == 1:
        return answers[0]
    parts = [msgspec.json.decode(a) for a in answers]
    bad = next((p for p in parts if isinstance(p, dict) and "error" in p), None)
    if bad is not None:
        return msgspec.json.encode(bad)
    if what == "balances":
        return msgspec.json.encode({k: v for p in parts for k, v in p.items()})
    joined = [item for p in parts for item in p]
    if what == "orders":
        joined.sort(key=lambda o: o["order_id"])
    return msgspec.json.encode(joined)


def split_funding(groups: MarketGroups, amounts: dict[str, str]) -> list[tuple[Group, dict[str, str]]]:
    """A funding (asset -> amount) as one per group holding those assets; an asset no market trades
    goes to the first group, whose engine rejects it (``unknown_asset``) as one engine always did."""
    out: list[tuple[Group, dict[str, str]]] = []
    for g in groups.groups:
        part = {a: v for a, v in amounts.items() if a in g.assets}
        if g.index == 0:
            known = {a for grp in groups.groups for a in grp.assets}
            part |= {a: v for a, v in amounts.items() if a not in known}
        if part:
            out.append((g, part))
    return out


def market_groups(text: str, specs: Sequence[MarketSpec]) -> MarketGroups:
    """The groups ``text`` describes over ``specs``; empty text is one group, ``main``.

    Raises :class:`GroupsError` (one line, with the fix) for a malformed layout, an unknown or
    repeated market, a market left out, or an asset shared by two groups.
    """
    by_symbol = {spec.symbol: spec for spec in specs}
    text = text.strip()
    if not text:
        return MarketGroups((Group(MAIN, 0, tuple(specs), _assets(specs)),))
    placed: dict[str, str] = {}
    parsed: list[tuple[str, list[MarketSpec]]] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, eq, listed = part.partition("=")
        name = name.strip()
        if not eq or not _NAME.fullmatch(name):
            raise GroupsError(
                f"bad market group {part!r}: write NAME=MARKET,MARKET;NAME=... with a lower-case name,"
                " e.g. STOCKCTL_MARKET_GROUPS='inr=TATA_INR,JIO_INR;us=AAPL_USD'"
            )
        if any(name == n for n, _ in parsed):
            raise GroupsError(f"market group {name!r} is named twice in STOCKCTL_MARKET_GROUPS")
        members: list[MarketSpec] = []
        for symbol in filter(None, (s.strip() for s in listed.split(","))):
            if symbol not in by_symbol:
                raise GroupsError(
                    f"market group {name!r} lists {symbol!r}, which is not a configured market"
                    f" (the markets are {', '.join(by_symbol)})"
                )
            if symbol in placed:
                raise GroupsError(f"market {symbol} is in two groups, {placed[symbol]!r} and {name!r}")
            placed[symbol] = name
            members.append(by_symbol[symbol])
        if not members:
            raise GroupsError(f"market group {name!r} lists no market")
        parsed.append((name, members))
    left = [s for s in by_symbol if s not in placed]
    if left:
        raise GroupsError(f"market{'s' if len(left) > 1 else ''} {', '.join(left)} in no group: add to a group")
    owner: dict[str, str] = {}
    for name, members in parsed:
        for asset in _assets(members):
            if owner.setdefault(asset, name) != name:
                raise GroupsError(
                    f"asset {asset} is traded in groups {owner[asset]!r} and {name!r}: markets that share an"
                    " asset must be in one group (every balance lives in one group)"
                )
    groups = []
    for i, (name, members) in enumerate(parsed):
        order = [spec for spec in specs if spec in members]  # the markets file's order
        groups.append(Group(name, i, tuple(order), _assets(order)))
    accounts = {g.accounts_market for g in groups}
    clash = sorted(accounts & set(by_symbol))
    if clash:
        raise GroupsError(f"market {clash[0]} has the name of a group's accounts market: rename the market")
    return MarketGroups(tuple(groups))


def _assets(specs: Sequence[MarketSpec]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for spec in specs:
        seen[spec.base] = None
        seen[spec.quote] = None
    return tuple(seen)


__all__ = [
    "ACCOUNTS",
    "MAIN",
    "MERGED",
    "Group",
    "GroupsError",
    "MarketGroups",
    "market_groups",
    "merge",
    "split_funding",
]
