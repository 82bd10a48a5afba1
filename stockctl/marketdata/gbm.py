"""Simulated prices: geometric Brownian motion per symbol.

The random walk itself runs in float log-space (it is a simulation, not money);
every price that leaves this module is quantised to the symbol's tick as an exact
decimal string.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from stockctl.marketdata.money import SCALE, from_units

TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600


@dataclass(frozen=True, slots=True)
class SymbolModel:
    """Starting price (decimal string), annual drift and annual volatility of one symbol."""

    start: str
    mu: float
    sigma: float
    tick_units: int = SCALE // 100  # one cent


# Roughly where these traded in 2025, with their usual annualised volatility.
SEED_MODELS: dict[str, SymbolModel] = {
    "AAPL": SymbolModel("228.50", 0.08, 0.25),
    "GOOGL": SymbolModel("172.30", 0.09, 0.28),
    "AMZN": SymbolModel("205.10", 0.10, 0.30),
    "MSFT": SymbolModel("415.20", 0.08, 0.22),
    "TSLA": SymbolModel("245.80", 0.05, 0.55),
}


def model_for(symbol: str) -> SymbolModel:
    """The seed model for a known symbol; a deterministic made-up one for any other."""
    if symbol in SEED_MODELS:
        return SEED_MODELS[symbol]
    rng = random.Random(f"model:{symbol}")
    start = rng.randint(2_000, 50_000)  # 20.00 .. 500.00
    return SymbolModel(f"{start // 100}.{start % 100:02d}", rng.uniform(0.0, 0.12), rng.uniform(0.2, 0.5))


class GbmWalk:
    """One symbol's price path: ``S *= exp((mu - sigma^2/2) dt + sigma sqrt(dt) Z)``."""

    __slots__ = ("_drift", "_log_price", "_rng", "_vol", "model")

    def __init__(self, model: SymbolModel, dt_years: float, rng: random.Random, start_units: int | None = None) -> None:
        self.model = model
        self._rng = rng
        units = start_units if start_units else round(float(model.start) * SCALE)
        self._log_price = math.log(units)
        self._drift = (model.mu - model.sigma**2 / 2) * dt_years
        self._vol = model.sigma * math.sqrt(dt_years)

    def step(self) -> int:
        """Advance one tick; return the new price in integer units, on the tick grid."""
        self._log_price += self._drift + self._vol * self._rng.gauss(0.0, 1.0)
        tick = self.model.tick_units
        units = round(math.exp(self._log_price) / tick) * tick
        return max(units, tick)  # a price never reaches zero

    def volume(self) -> int:
        """A plausible trade size in shares: mostly small, sometimes a block."""
        return min(int(self._rng.paretovariate(1.3) * 10), 100_000)


def make_walks(
    symbols: list[str], rate: float, sim_speed: float, seed: int | None, start_units: dict[str, int] | None = None
) -> dict[str, GbmWalk]:
    """One walk per symbol; with ``seed`` the whole stream is reproducible."""
    dt_years = sim_speed / (rate * TRADING_SECONDS_PER_YEAR)
    start_units = start_units or {}
    walks = {}
    for sym in symbols:
        rng = random.Random(f"{seed}:{sym}") if seed is not None else random.Random()
        walks[sym] = GbmWalk(model_for(sym), dt_years, rng, start_units.get(sym))
    return walks


__all__ = ["SEED_MODELS", "GbmWalk", "SymbolModel", "from_units", "make_walks", "model_for"]
