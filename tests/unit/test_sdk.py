"""The SDK's pure parts: rounding to tick and lot, the local book and its resync, frame types."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import msgspec
import pytest

from stockctl.errors import UsageError
from stockctl.sdk.book import LocalBook, maintain
from stockctl.sdk.rules import MarketRules, text
from stockctl.sdk.types import BookUpdate, OrderEventFrame, OwnTrade, QuoteFrame, Welcome, decode_frame
from stockctl.wire.exchange import DEFAULT_MARKETS, MarketSpec
from stockctl.wire.gateway import ServerFrame, server_frame_decoder

TATA = MarketRules(DEFAULT_MARKETS[0])  # tick 0.05, lot 1, 1..100000


def test_prices_round_the_safe_way_and_quantities_down_to_whole_lots() -> None:
    assert TATA.price(Decimal("950.03"), "buy") == Decimal("950.00")
    assert TATA.price(Decimal("950.03"), "sell") == Decimal("950.05")
    assert TATA.price("950.03") == Decimal("950.05")  # nearest
    assert TATA.price("950.025") == Decimal("950.00")  # half to even tick
    assert text(TATA.price(950, "buy")) == "950.00"
    assert TATA.qty(Decimal("7.9")) == 7 and TATA.qty(10**9) == Decimal("100000")
    assert text(Decimal("1E+2")) == "100"
    fine = MarketRules(MarketSpec("BTC_USDT", "BTC", "USDT", "0.01", "0.0001", "0.0001", "100", "10000000"))
    assert text(fine.qty("0.123456")) == "0.1234" and fine.price("0.009", "sell") == Decimal("0.01")
    with pytest.raises(UsageError, match="below TATA_INR's minimum 1"):
        TATA.qty("0.5")
    with pytest.raises(UsageError, match="rounds to 0"):
        TATA.price("0.01", "buy")
    with pytest.raises(UsageError, match="above TATA_INR's bound"):
        TATA.price("2000000")


def frame(kind: str, data: dict) -> ServerFrame:
    return server_frame_decoder.decode(json.dumps({"type": kind, "channel": "book:TATA_INR", "data": data}))


def level(*lv: str) -> list[list[str]]:
    return [x.split("x") for x in lv]


async def run(frames: list[ServerFrame], rest: list[BookUpdate]) -> tuple[list[tuple[int, list, list]], LocalBook]:
    """Every state the book goes through, and the book; ``rest`` answers the resyncs in turn."""

    async def source() -> AsyncIterator[ServerFrame]:
        for f in frames:
            yield f

    async def fetch() -> BookUpdate:
        return rest.pop(0)

    seen, book = [], LocalBook("TATA_INR")
    async for book in maintain(source(), "TATA_INR", fetch):
        seen.append((book.seq, book.levels("bids"), book.levels("asks")))
    return seen, book


def test_the_local_book_applies_deltas_in_order_skips_old_ones_and_resyncs_on_a_gap() -> None:
    d = Decimal
    frames = [
        frame("book", {"type": "delta", "market": "TATA_INR", "seq": 4, "bids": [], "asks": []}),  # before a snapshot
        frame("snapshot", {"market": "TATA_INR", "seq": 5, "bids": [["950.00", "3", 1]], "asks": [["951.00", "2", 1]]}),
        frame("book", {"type": "delta", "market": "TATA_INR", "seq": 5, "bids": level("949.00x9"), "asks": []}),
        frame(
            "book", {"type": "delta", "market": "TATA_INR", "seq": 6, "bids": level("950.00x0", "949.50x4"), "asks": []}
        ),
        # seq 7 and 8 are lost: the REST book (seq 8) mends it, then 9 applies
        frame("book", {"type": "delta", "market": "TATA_INR", "seq": 9, "bids": [], "asks": level("951.00x5")}),
        frame("book", {"type": "delta", "market": "TATA_INR", "seq": 10, "bids": [], "asks": level("951.50x1")}),
        # matching restarted: its feed starts again at 1 with a snapshot
        frame("book", {"type": "snapshot", "market": "TATA_INR", "seq": 1, "bids": [["948.00", "1", 1]], "asks": []}),
        frame("book", {"type": "delta", "market": "TATA_INR", "seq": 2, "bids": level("948.50x2"), "asks": []}),
    ]
    rest = [
        msgspec.convert(
            {"market": "TATA_INR", "seq": 8, "bids": [["949.50", "4", 1]], "asks": [["951.00", "7", 2]]}, BookUpdate
        )
    ]
    seen, book = asyncio.run(run(frames, rest))

    assert [s[0] for s in seen] == [5, 6, 9, 10, 1, 2]
    assert seen[1] == (6, [(d("949.50"), d(4))], [(d("951.00"), d(2))])  # the stale seq 5 was skipped
    assert seen[2] == (9, [(d("949.50"), d(4))], [(d("951.00"), d(5))])  # REST at 8, then delta 9
    assert book.resyncs == 1 and not rest
    assert book.levels("bids") == [(d("948.50"), d(2)), (d("948.00"), d(1))] and book.best_ask is None


def test_book_helpers_best_mid_spread_imbalance() -> None:
    book = LocalBook("TATA_INR")
    book.reset(
        msgspec.convert(
            {
                "market": "TATA_INR",
                "seq": 1,
                "bids": [["950.00", "30"], ["949.95", "10"]],
                "asks": [["950.10", "10"]],
                "last": "950.05",
            },
            BookUpdate,
        )
    )
    assert book.best_bid == (Decimal("950.00"), Decimal(30)) and book.best_ask == (Decimal("950.10"), Decimal(10))
    assert book.mid == Decimal("950.05") and book.spread == Decimal("0.10") and book.last == Decimal("950.05")
    assert book.imbalance(1) == Decimal("0.5") and book.imbalance(5) == Decimal("0.6")
    assert msgspec.to_builtins(book.to_update())["bids"] == [["950.00", "30", None], ["949.95", "10", None]]


def test_frames_decode_to_their_types_and_own_trades_know_your_side() -> None:
    welcome = decode_frame(b'{"type":"welcome","email":"ada@example.com","expires":1}')
    assert isinstance(welcome, Welcome) and welcome.email == "ada@example.com"
    q = decode_frame(
        b'{"type":"quote","channel":"quotes:AAPL","data":{"symbol":"AAPL","price":"1.00","ts":1,"seq":2,'
        b'"open":"1","high":"1","low":"1","change":"0","change_pct":"0","extra":"ignored"}}'
    )
    assert isinstance(q, QuoteFrame) and q.data.price == "1.00"
    maker = {
        "event": "trade", "seq": 3, "ts": 1, "market": "TATA_INR", "trade_id": 7, "price": "950.00", "qty": "2",
        "taker_side": "buy", "maker_user": "ada", "maker_order_id": 11, "maker_client_order_id": "a",
        "maker_remaining": "1", "maker_fee": "0",
    }  # fmt: skip
    ev = decode_frame(json.dumps({"type": "order_event", "channel": "orders", "data": maker}))
    assert isinstance(ev, OrderEventFrame) and isinstance(ev.data, OwnTrade)
    assert (ev.data.liquidity, ev.data.side, ev.data.order_id, ev.data.remaining) == ("maker", "sell", 11, 1)
    with pytest.raises(msgspec.ValidationError):
        decode_frame(b'{"type":"nonsense"}')


def test_the_package_ships_py_typed_in_the_wheel() -> None:
    # hatch puts every file of a listed package in the wheel (a built wheel was checked to
    # hold stockctl/py.typed): so the marker must exist, and the wheel must list the package.
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert (root / "stockctl" / "py.typed").is_file()
    wheel = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "stockctl" in wheel["packages"] and not wheel.get("exclude")
