"""A view list that Redis sets back (a failover promoted a replica that missed its last
writes) is found out at matching's next write to it and written again from memory: every
fill is in it once, in order, with matching still running."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from stockctl.wire import names
from tests.support.exchange import Ex, running_exchange
from tests.support.stack import Daemon, Servers, wait_for

pytestmark = pytest.mark.integration

MKT = "TATA_INR"


def _trade(ex: Ex, seller: str, buyer: str, price: str) -> None:
    assert ex.order(seller, market=MKT, side="sell", qty="1", price=price).status_code == 201
    assert ex.order(buyer, market=MKT, side="buy", qty="1", price=price).status_code == 201


def _fill_prices(ex: Ex, email: str) -> list[str]:
    return [f["price"] for f in ex.call(email, "GET", "/api/v1/fills").json()]


def test_a_fills_list_set_back_by_redis_is_written_again_at_the_next_trade(
    servers: Servers, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange: two trades in alice's fills, and a copy of the list and its watermark after the first
    ex = running_exchange(servers, tmp_path, daemons)
    alice, bob = "alice@example.com", "bob@example.com"
    r = redis.Redis.from_url(servers.redis_url)
    fills, marks = names.fills_key(alice), names.list_seq_key(names.fills_key(alice))
    _trade(ex, alice, bob, "100.00")
    wait_for(lambda: len(_fill_prices(ex, alice)) == 1, 20, what="the first fill")
    saved = {key: r.dump(key) for key in (fills, marks)}
    _trade(ex, alice, bob, "101.00")
    wait_for(lambda: len(_fill_prices(ex, alice)) == 2, 20, what="the second fill")

    # Act: Redis "loses" the second write, as a replica promoted before it got it would; then a trade
    for key, value in saved.items():
        r.restore(key, 0, value, replace=True)
    assert _fill_prices(ex, alice) == ["100.00"]
    _trade(ex, alice, bob, "102.00")

    # Assert: the lost fill is back, nothing twice, oldest first; bob's list was never touched
    wait_for(lambda: len(_fill_prices(ex, alice)) >= 3, 20, what="alice's fills written again")
    assert _fill_prices(ex, alice) == ["100.00", "101.00", "102.00"]
    assert _fill_prices(ex, bob) == ["100.00", "101.00", "102.00"]
    # ... and matching's status (written every half second) counts the one set-back
    wait_for(lambda: _status_info(ex).get("views_set_back") == 1, 5, what=f"views_set_back 1 in {_status_info(ex)}")


def _status_info(ex: Ex) -> dict:
    try:
        return json.loads(ex.procs["matching"].status_path.read_text())["info"]
    except (OSError, ValueError):
        return {}
