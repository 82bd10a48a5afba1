"""A seeded, frozen data set: the whole screen without a network (snapshot tests, demos)."""

from __future__ import annotations

import random
from decimal import Decimal

from msgspec.structs import replace

from stockctl.marketdata.candles import bucket_start, parse_interval
from stockctl.wire.marketdata import Candle, PricePoint, Quote, Signal
from tui.source import FrozenData

T0 = 1_700_000_000_000_000_000
STEP = 200_000_000  # 5 ticks a second


def sma(values: list[float], window: int) -> list[float | None]:
    """Simple moving average; None until the window is full."""
    out: list[float | None] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / window if i >= window - 1 else None)
    return out


def crossovers(fast: list[float | None], slow: list[float | None]) -> list[tuple[int, str]]:
    """Indexes where fast crosses slow: BUY when it crosses above, SELL below (the demo's
    stand-in for the processor's signals; the chart only shows signals, it computes none)."""
    marks: list[tuple[int, str]] = []
    prev = 0
    for i, (f, s) in enumerate(zip(fast, slow, strict=True)):
        if f is None or s is None:
            continue
        sign = 1 if f > s else -1 if f < s else 0
        if sign and prev and sign != prev:
            marks.append((i, "BUY" if sign > 0 else "SELL"))
        if sign:
            prev = sign
    return marks


def candles_of(symbol: str, points: list[PricePoint], volumes: list[int], interval: str) -> list[Candle]:
    """OHLCV candles of ``interval`` folded from the ticks, as the processor builds them."""
    span = parse_interval(interval)
    out: list[Candle] = []
    for pt, vol in zip(points, volumes, strict=True):
        start, p = bucket_start(pt.ts, span), Decimal(pt.price)
        last = out[-1] if out else None
        if last is None or start > last.start:
            out.append(Candle(symbol, interval, start, pt.price, pt.price, pt.price, pt.price, vol, 1))
            continue
        high, low = max(Decimal(last.high), p), min(Decimal(last.low), p)
        out[-1] = replace(
            last, high=str(high), low=str(low), close=pt.price, volume=last.volume + vol, count=last.count + 1
        )
    return out


def _walk(rng: random.Random, start: float, n: int) -> list[Decimal]:
    out, p = [], start
    for _ in range(n):
        p *= 1 + rng.gauss(0, 0.002)
        out.append(Decimal(f"{p:.2f}"))
    return out


def demo_data(seed: int = 7, points: int = 400, fast: int = 20, slow: int = 50) -> FrozenData:
    """Two stocks and two exchange markets with history, signals, a book, trades, orders and fills."""
    rng = random.Random(seed)
    volume_rng = random.Random(seed + 1)  # its own stream: prices, books and trades stay as they were
    starts = {"AAPL": 187.5, "MSFT": 402.25, "JIO_INR": 251.4, "TATA_INR": 1042.7}
    now = T0 + points * STEP
    quotes, history, signals, candles = [], {}, {}, {}
    for sym, start in starts.items():
        prices = _walk(rng, start, points)
        pts = [PricePoint(str(p), T0 + i * STEP, i + 1) for i, p in enumerate(prices)]
        history[sym] = pts
        volumes = [1 + int(volume_rng.expovariate(1 / 15)) for _ in pts]
        candles[sym] = [c for iv in ("1s", "1m") for c in candles_of(sym, pts, volumes, iv)]
        first, last = prices[0], prices[-1]
        change = last - first
        # One symbol went quiet 40 s ago: it shows as stale.
        ts = now - (40_000_000_000 if sym == "MSFT" else 0)
        quotes.append(
            Quote(
                symbol=sym,
                price=str(last),
                ts=ts,
                seq=points,
                open=str(first),
                high=str(max(prices)),
                low=str(min(prices)),
                change=str(change),
                change_pct=f"{change / first * 100:.2f}",
                volume=rng.randint(1000, 90000),
            )
        )
        floats = [float(p) for p in prices]
        f, s = sma(floats, fast), sma(floats, slow)
        signals[sym] = [
            Signal(sym, side, str(prices[i]), T0 + i * STEP, i + 1, f"{f[i]:.2f}", f"{s[i]:.2f}")  # type: ignore[arg-type]
            for i, side in crossovers(f, s)
        ][-6:]
    markets = [
        {
            "symbol": m,
            "base": m.split("_")[0],
            "quote": "INR",
            "tick_size": "0.05",
            "lot_size": "1",
            "min_qty": "1",
            "max_qty": "100000",
            "max_price": "1000000",
        }
        for m in ("JIO_INR", "TATA_INR")
    ]
    books = {}
    trades = {}
    for m in ("JIO_INR", "TATA_INR"):
        mid = Decimal(str(round(starts[m] * 20) / 20))
        books[m] = {
            "market": m,
            "seq": 42,
            "last": str(mid),
            "bids": [[str(mid - Decimal("0.05") * (i + 1)), str(rng.randint(1, 60) * 5), 1] for i in range(12)],
            "asks": [[str(mid + Decimal("0.05") * (i + 1)), str(rng.randint(1, 60) * 5), 1] for i in range(12)],
        }
        trades[m] = [
            {
                "event": "trade",
                "market": m,
                "trade_id": i + 1,
                "ts": now - (20 - i) * 1_000_000_000,
                "price": str(mid + Decimal("0.05") * rng.randint(-3, 3)),
                "qty": str(rng.randint(1, 40)),
                "taker_side": rng.choice(["buy", "sell"]),
            }
            for i in range(20)
        ]
    orders = [
        {
            "order_id": 11,
            "market": "TATA_INR",
            "side": "buy",
            "type": "limit",
            "price": "1040.00",
            "qty": "10",
            "remaining": "10",
            "ts": now - 5_000_000_000,
            "client_order_id": "a1",
        },
        {
            "order_id": 12,
            "market": "JIO_INR",
            "side": "sell",
            "type": "limit",
            "price": "252.50",
            "qty": "25",
            "remaining": "15",
            "ts": now - 3_000_000_000,
            "client_order_id": "a2",
        },
    ]
    fills = [
        {
            "ts": now - 3_000_000_000,
            "market": "JIO_INR",
            "side": "sell",
            "qty": "10",
            "price": "252.50",
            "fee": "2.52",
            "liquidity": "maker",
            "order_id": 12,
            "trade_id": 7,
        },
    ]
    balances = {
        "INR": {"available": "987654.32", "reserved": "10400.00"},
        "JIO": {"available": "990", "reserved": "15"},
        "TATA": {"available": "1000", "reserved": "0"},
    }
    return FrozenData(
        now_ns=now,
        quotes=quotes,
        history=history,
        signals=signals,
        candles=candles,
        markets=markets,
        books=books,
        trades=trades,
        orders=orders,
        fills=fills,
        balances=balances,
    )
