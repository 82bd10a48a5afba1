"""Seed 000/002's StockPrice, spliced from our text: exact digits, RFC 3339 times."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from stockctl.wire.seeds import rfc3339, stock_price


def test_rfc3339_matches_datetime_across_seconds_and_the_cache() -> None:
    # Back and forth across second boundaries: the cached second must never leak into another.
    for ts in (0, 999_999_999, 1_000_000_000, 1796159381086156865, 1796159380999999999, 1796159381000000000):
        expected = datetime.fromtimestamp(ts // 10**9, UTC).replace(microsecond=(ts % 10**9) // 10**6 * 1000)
        assert datetime.fromisoformat(rfc3339(ts)) == expected
        assert rfc3339(ts).endswith("Z")


def test_stock_price_is_json_with_our_exact_digits() -> None:
    doc = json.loads(stock_price("BRK.B", "100.10", 1796159381086156865), parse_float=Decimal)
    assert doc == {"symbol": "BRK.B", "price": Decimal("100.10"), "timestamp": "2026-12-01T21:09:41.086Z"}
    assert str(doc["price"]) == "100.10"  # not 100.1: the digits are ours
