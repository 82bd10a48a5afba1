"""The pure parts of the REST conventions: exact numbers in, times out, order state, pages, rate windows."""

from __future__ import annotations

import msgspec
import pytest

from daemons.gateway.limits import RateLimiter
from daemons.gateway.orders import avg_price, finished_state, open_state, page, parse_after
from stockctl.errors import UsageError
from stockctl.wire.gateway import OrderIn, order_in_decoder
from stockctl.wire.rest import rfc3339, with_times


def test_json_numbers_are_read_from_their_digits() -> None:
    order = order_in_decoder.decode(b'{"market":"M","side":"buy","qty":1e3,"price":0.1000000000000000000001}')
    assert (order.qty, order.price) == ("1000", "0.1000000000000000000001")
    assert order_in_decoder.decode(b'{"market":"M","side":"buy","qty":"7"}') == OrderIn("M", "buy", "7")
    assert order_in_decoder.decode(b'{"market":"M","side":"buy","qty":1e999999}').qty == "1E+999999"  # not spelled out
    with pytest.raises(msgspec.ValidationError, match=r"\$\.qty"):
        order_in_decoder.decode(b'{"market":"M","side":"buy","qty":true}')
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        order_in_decoder.decode(b'{"market":"M","side":"buy","qty":1,"x":1}')


def test_times_are_ns_ms_and_rfc3339() -> None:
    ns = 1_714_555_800_123_456_789
    assert rfc3339(ns) == "2024-05-01T09:30:00.123456789Z"
    assert rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
    doc = with_times({"ts": ns, "alert": {"created": ns, "fired_ts": None}, "rows": [{"start": 5}], "seq": 3})
    assert doc["ts_ms"] == 1_714_555_800_123 and doc["time"] == rfc3339(ns)
    assert doc["alert"]["created_time"] == rfc3339(ns) and "fired_ms" not in doc["alert"]
    assert doc["rows"][0] == {"start": 5, "start_ms": 0, "start_time": "1970-01-01T00:00:00.000000005Z"}
    assert "seq_ms" not in doc and with_times({"ts": True}) == {"ts": True}


def test_order_state_open_and_finished() -> None:
    fills = [{"qty": "1", "price": "100"}, {"qty": "2", "price": "101"}]
    view = {"order_id": 1, "qty": "10", "remaining": "7", "status": "open"}
    assert open_state(view, fills) | {} == view | {
        "filled_qty": "3",
        "avg_price": "100.66666667",
        "status": "partially_filled",
    }
    assert open_state({**view, "remaining": "10", "status": "pending"}, [])["status"] == "pending"
    accepted = {
        "event": "accepted", "order_id": 1, "client_order_id": "c", "market": "M", "side": "buy", "tif": "gtc",
        "post_only": False, "qty": "10", "price": "100.00", "ts": 1, "order_type": "limit",
    }  # fmt: skip
    amended = {"event": "amended", "order_id": 1, "new_qty": "8", "new_price": "99.00"}
    done = finished_state([accepted, amended], fills)
    assert done is not None
    assert (done["status"], done["qty"], done["price"], done["remaining"], done["filled_qty"]) == (
        "filled", "8", "99.00", "0", "8",
    )  # fmt: skip
    cancelled = {"event": "cancelled", "order_id": 1, "remaining": "10", "reason": "expired"}
    gone = finished_state([accepted, cancelled], [])
    assert gone is not None and (gone["status"], gone["reason"], gone["avg_price"]) == ("cancelled", "expired", None)
    assert finished_state([cancelled], []) is None
    assert avg_price([{"qty": "3", "price": "0.1"}]) == "0.1"


def test_pages_latest_without_a_range_first_of_it_with_one() -> None:
    items = [{"id": i, "ts": i * 10} for i in (5, 1, 3, 2, 4)]
    ts, ident = (lambda x: x["ts"]), (lambda x: x["id"])
    assert page(items, ts, ident, None, None, None, 2) == ([{"id": 4, "ts": 40}, {"id": 5, "ts": 50}], None)
    first, cursor = page(items, ts, ident, None, None, 0, 2)
    assert [x["id"] for x in first] == [1, 2] and cursor == "2"
    last, cursor = page(items, ts, ident, 20, 50, 3, 2)
    assert [x["id"] for x in last] == [4] and cursor is None
    with pytest.raises(UsageError, match="bad cursor"):
        parse_after("1:2")


def test_rate_windows_count_per_key_and_reset() -> None:
    now = [100.0]
    limiter = RateLimiter(2, 10, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [(True, 1, 10), (True, 0, 10), (False, 0, 10)]
    assert limiter.hit("b") == (True, 1, 10)
    now[0] = 107.5
    assert limiter.hit("a") == (False, 0, 3)
    now[0] = 110.0
    assert limiter.hit("a") == (True, 1, 10)
