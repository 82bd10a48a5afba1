"""Asking the matching daemons: one query, sent to the market groups that hold the answer.

:func:`ask_matching` sends a query (``balances``, ``orders``, ``book``, ``outcome``,
``markets``) to each group :meth:`~stockctl.exchange.groups.MarketGroups.asked` names, at the
same time, and merges the answers (:func:`~stockctl.exchange.groups.merge`). With one group,
``main``, it is one request on the subject it always had. It raises what ``nc.request`` raises
(no responders, timeout) when any group does not answer: a partial balance would be a wrong one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec

from stockctl.exchange.groups import MarketGroups, merge
from stockctl.wire import names

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS


async def ask_matching(nc: NATS, groups: MarketGroups, what: str, payload: dict[str, Any], timeout: float) -> bytes:
    """The answer to ``what`` from every group that holds part of it, merged."""
    body = msgspec.json.encode(payload)
    asked = groups.asked(what, payload)
    replies = await asyncio.gather(
        *(nc.request(names.query_subject(what, g.name), body, timeout=timeout) for g in asked)
    )
    return merge(what, [r.data for r in replies])
