"""The processor's pure logic: per-symbol state, what a tick changes, and dedup rules.

No I/O here: the daemon feeds ticks in, writes what comes out to Redis in one
transaction, and only then acknowledges the ticks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from stockctl.marketdata.candles import CandleBuilder, CandleState, parse_interval
from stockctl.marketdata.money import SCALE, from_units, mean_str, pct_change_str, qty_text, to_units
from stockctl.marketdata.sma import SmaCrossover
from stockctl.wire.marketdata import Candle, PricePoint, Quote, Signal, Tick

DAY_NS = 86_400_000_000_000

_price_text = functools.lru_cache(maxsize=16_384)(from_units)
"""``from_units`` remembered: a quote's open, high and low repeat from tick to tick."""


class Verdict(Enum):
    """What to do with a delivered tick, given what has been applied so far."""

    APPLY = "apply"
    DUPLICATE = "duplicate"  # already applied (a redelivery or a retried publish): ack and skip
    GAP = "gap"  # ticks are missing before it: fetch them from the stream, or wait for them
    RESET = "reset"  # the publisher started its sequence again at 1


@dataclass(slots=True)
class Applied:
    """Everything one tick changed."""

    quote: Quote
    point: PricePoint
    candles: list[tuple[str, CandleState]]
    signal: Signal | None


@dataclass(slots=True)
class SymbolState:
    """What the processor knows about one symbol; restorable from Redis."""

    symbol: str
    crossover: SmaCrossover
    candles: dict[str, CandleBuilder]
    last_seq: int = 0
    last_sseq: int = 0
    day: int = -1
    open: int = 0
    high: int = 0
    low: int = 0
    volume: int = 0
    qty: int = 0
    """Today's exact traded quantity (1e-8 units) of ticks that carry ``qty``."""
    last_signal: Literal["BUY", "SELL"] | None = None
    last_quote: Quote | None = field(default=None)

    @classmethod
    def new(cls, symbol: str, fast: int, slow: int, intervals: list[str]) -> SymbolState:
        return cls(
            symbol,
            SmaCrossover(fast, slow),
            {iv: CandleBuilder(parse_interval(iv)) for iv in intervals},
        )

    def classify(self, tick: Tick, sseq: int) -> Verdict:
        """Order by the publisher's per-symbol sequence; tell a restarted sequence by the stream's.

        Redelivery and a publisher's retry after an outage can bring ticks out of stream
        order, so the tick sequence (consecutive per symbol) decides; the stream sequence
        (monotonic, never reused) only separates a publisher that started again at 1 from
        a late duplicate of the original tick 1.
        """
        if self.last_seq == 0 or tick.seq == self.last_seq + 1:
            return Verdict.APPLY
        if tick.seq > self.last_seq + 1:
            return Verdict.GAP
        if tick.seq == 1 and sseq > self.last_sseq:
            return Verdict.RESET
        return Verdict.DUPLICATE

    def apply(self, tick: Tick, sseq: int) -> Applied:
        units = to_units(tick.price)
        self.last_seq, self.last_sseq = tick.seq, max(self.last_sseq, sseq)
        day = tick.ts // DAY_NS
        if day != self.day:
            # A new (UTC) trading day: open, high, low and volume start again.
            self.day, self.open, self.high, self.low, self.volume, self.qty = day, units, units, units, 0, 0
        else:
            self.high = max(self.high, units)
            self.low = min(self.low, units)
        qty = to_units(tick.qty, "quantity") if tick.qty else 0
        self.volume += tick.volume
        self.qty += qty

        side = self.crossover.push(units)
        fast, slow = self.crossover.fast, self.crossover.slow
        sma_fast = mean_str(fast.total, fast.window) if fast.ready else None
        sma_slow = mean_str(slow.total, slow.window) if slow.ready else None
        signal = None
        if side is not None:
            self.last_signal = side
            assert sma_fast is not None and sma_slow is not None
            signal = Signal(self.symbol, side, tick.price, tick.ts, tick.seq, sma_fast, sma_slow)

        changed = []
        for iv, builder in self.candles.items():
            candle = builder.add(tick.ts, units, tick.volume, qty)
            if candle is not None:
                changed.append((iv, candle))

        quote = Quote(
            symbol=self.symbol,
            price=tick.price,
            ts=tick.ts,
            seq=tick.seq,
            open=_price_text(self.open),
            high=_price_text(self.high),
            low=_price_text(self.low),
            change=from_units(units - self.open),
            change_pct=pct_change_str(self.open, units),
            volume=self.volume + self.qty // SCALE,
            sma_fast=sma_fast,
            sma_slow=sma_slow,
            signal=self.last_signal,
            qty=qty_text(self.qty),
        )
        self.last_quote = quote
        return Applied(quote, PricePoint(tick.price, tick.ts, tick.seq), changed, signal)

    def quote_fields(self) -> dict[str, str | int]:
        """The Redis hash that holds the latest quote and this state's restart point."""
        q = self.last_quote
        assert q is not None
        fields: dict[str, str | int] = {
            "symbol": q.symbol,
            "price": q.price,
            "ts": q.ts,
            "seq": q.seq,
            "sseq": self.last_sseq,
            "open": q.open,
            "high": q.high,
            "low": q.low,
            "change": q.change,
            "change_pct": q.change_pct,
            "volume": q.volume,
            "day": self.day,
            "sma_fast": q.sma_fast or "",
            "sma_slow": q.sma_slow or "",
            "signal": q.signal or "",
            "sma_relation": self.crossover.relation,
            "qty": q.qty or "",
        }
        return fields

    @classmethod
    def restore(
        cls,
        symbol: str,
        fast: int,
        slow: int,
        intervals: list[str],
        fields: dict[str, str],
        history: list[PricePoint],
        last_candles: dict[str, Candle],
    ) -> SymbolState:
        """Rebuild from the quote hash, the stored history and the newest candle per interval."""
        state = cls.new(symbol, fast, slow, intervals)
        if not fields:
            return state
        state.last_seq = int(fields["seq"])
        state.last_sseq = int(fields["sseq"])
        state.day = int(fields["day"])
        state.open, state.high, state.low = (to_units(fields[k]) for k in ("open", "high", "low"))
        # the hash's volume holds the whole units of qty too (what clients read); take them out
        state.qty = to_units(fields["qty"], "quantity") if fields.get("qty") else 0
        state.volume = int(fields["volume"]) - state.qty // SCALE
        state.last_signal = fields.get("signal") or None  # type: ignore[assignment]
        # The SMA windows and the crossover side come from replaying history, so a
        # restart neither invents nor misses a crossover.
        for point in history:
            state.crossover.push(to_units(point.price))
        # History where fast == slow throughout cannot tell which side fast was on; the
        # stored side can (else the next crossover after restart would be missed).
        state.crossover.seed_relation(int(fields.get("sma_relation") or 0))
        for iv, candle in last_candles.items():
            if iv in state.candles:
                qty = to_units(candle.qty, "quantity") if candle.qty else 0
                state.candles[iv].current = CandleState(
                    candle.start,
                    to_units(candle.open),
                    to_units(candle.high),
                    to_units(candle.low),
                    to_units(candle.close),
                    candle.volume - qty // SCALE,
                    candle.count,
                    qty,
                )
        state.last_quote = quote_from_fields(fields)
        return state


def quote_from_fields(fields: dict[str, str]) -> Quote:
    """A Quote from the Redis quote hash (decoded to str)."""
    return Quote(
        symbol=fields["symbol"],
        price=fields["price"],
        ts=int(fields["ts"]),
        seq=int(fields["seq"]),
        open=fields["open"],
        high=fields["high"],
        low=fields["low"],
        change=fields["change"],
        change_pct=fields["change_pct"],
        volume=int(fields.get("volume") or 0),
        sma_fast=fields.get("sma_fast") or None,
        sma_slow=fields.get("sma_slow") or None,
        signal=fields.get("signal") or None,  # type: ignore[arg-type]
        qty=fields.get("qty") or None,
    )


def candle_of(symbol: str, interval: str, c: CandleState) -> Candle:
    return Candle(
        symbol,
        interval,
        c.start,
        from_units(c.open),
        from_units(c.high),
        from_units(c.low),
        from_units(c.close),
        c.volume + c.qty // SCALE,
        c.count,
        qty_text(c.qty),
    )
