"""stockctl.gbm: seeded, positive, tick-grid price walks."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from stockctl.marketdata.gbm import SEED_MODELS, GbmWalk, SymbolModel, make_walks, model_for
from tests.support.arithmetic import SCALE, units_of

CENT = SCALE // 100
SECONDS_PER_TRADING_YEAR = 252 * 6.5 * 60 * 60
SYMBOLS = ["AAPL", "TSLA", "ZZTOP"]


def stream(walks: dict[str, GbmWalk], steps: int) -> list[tuple[str, int, int]]:
    """Interleave steps over all walks, as the publisher does: (symbol, price, volume)."""
    out = []
    for _ in range(steps):
        for sym, walk in walks.items():
            out.append((sym, walk.step(), walk.volume()))
    return out


def seeded(seed: int | None, symbols: list[str] = SYMBOLS, **kw: object) -> dict[str, GbmWalk]:
    return make_walks(symbols, rate=10.0, sim_speed=60.0, seed=seed, **kw)  # type: ignore[arg-type]


# --- reproducibility ----------------------------------------------------------------------


def test_same_seed_gives_an_identical_stream() -> None:
    assert stream(seeded(42), 300) == stream(seeded(42), 300)


def test_different_seeds_give_different_streams() -> None:
    a, b = stream(seeded(1), 50), stream(seeded(2), 50)

    assert [p for _, p, _ in a] != [p for _, p, _ in b]


def test_a_symbols_path_does_not_depend_on_the_other_symbols() -> None:
    alone = seeded(7, ["TSLA"])["TSLA"]
    together = seeded(7, ["AAPL", "TSLA", "MSFT"])["TSLA"]

    assert [alone.step() for _ in range(100)] == [together.step() for _ in range(100)]


def test_unseeded_walks_differ() -> None:
    a, b = stream(seeded(None), 50), stream(seeded(None), 50)

    assert a != b


# --- prices on the grid -------------------------------------------------------------------


def test_prices_stay_positive_and_on_the_cent_grid() -> None:
    walks = make_walks([*SEED_MODELS, "NEWCO"], rate=1.0, sim_speed=3600.0, seed=3)

    for _, price, _ in stream(walks, 2000):
        assert price >= CENT
        assert price % CENT == 0


def test_a_collapsing_price_is_floored_at_one_tick() -> None:
    crash = SymbolModel("0.05", mu=-50.0, sigma=2.0)
    walk = GbmWalk(crash, dt_years=0.05, rng=random.Random(0))

    prices = [walk.step() for _ in range(500)]

    assert min(prices) == CENT
    assert all(p >= CENT and p % CENT == 0 for p in prices)


def test_volumes_are_bounded_whole_shares() -> None:
    walk = seeded(5)["AAPL"]

    volumes = [walk.volume() for _ in range(5000)]

    assert all(isinstance(v, int) and 10 <= v <= 100_000 for v in volumes)
    assert len(set(volumes)) > 10


def test_walk_starts_near_the_given_start_price() -> None:
    start = units_of("1000.00")
    walk = make_walks(["AAPL"], rate=10.0, sim_speed=1.0, seed=9, start_units={"AAPL": start})["AAPL"]

    first = walk.step()

    assert abs(first - start) < start // 100  # one tiny step: well within 1%


def test_walk_without_start_units_starts_at_the_model_price() -> None:
    walk = make_walks(["MSFT"], rate=10.0, sim_speed=1.0, seed=9)["MSFT"]

    first = walk.step()

    start = units_of(SEED_MODELS["MSFT"].start)
    assert abs(first - start) < start // 100


# --- model_for ----------------------------------------------------------------------------


def test_known_symbols_use_their_seed_model() -> None:
    for sym, model in SEED_MODELS.items():
        assert model_for(sym) is model


@pytest.mark.parametrize("symbol", ["ZZTOP", "NEWCO", "X", "BTC_USD"])
def test_unknown_symbols_get_a_deterministic_plausible_model(symbol: str) -> None:
    a, b = model_for(symbol), model_for(symbol)

    assert a == b
    start = units_of(a.start)
    assert units_of("20.00") <= start <= units_of("500.00")
    assert start % CENT == 0
    assert 0.0 <= a.mu <= 0.12
    assert 0.2 <= a.sigma <= 0.5
    assert a.tick_units == CENT


def test_unknown_symbols_get_different_models() -> None:
    models = {model_for(f"SYM{i}") for i in range(20)}

    assert len(models) > 1


# --- statistics ---------------------------------------------------------------------------


def test_log_return_volatility_matches_sigma_sqrt_dt() -> None:
    # One trading minute per step; a high price so the cent grid adds negligible noise.
    rate, sim_speed = 1.0, 60.0
    dt = sim_speed / (rate * SECONDS_PER_TRADING_YEAR)
    sigma = 0.3
    model = SymbolModel("5000.00", mu=0.05, sigma=sigma)
    walk = GbmWalk(model, dt_years=dt, rng=random.Random(2024))
    prices = [units_of(model.start)] + [walk.step() for _ in range(20_000)]

    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    expected_sd = sigma * math.sqrt(dt)

    assert statistics.stdev(returns) == pytest.approx(expected_sd, rel=0.1)
    standard_error = expected_sd / math.sqrt(len(returns))
    assert abs(statistics.fmean(returns) - (model.mu - sigma**2 / 2) * dt) < 5 * standard_error


def test_make_walks_derives_dt_from_rate_and_sim_speed() -> None:
    # rate 2 ticks/s at 600x speed: each step is 300 simulated trading seconds.
    walk = make_walks(["MSFT"], rate=2.0, sim_speed=600.0, seed=11, start_units={"MSFT": units_of("5000.00")})["MSFT"]
    dt = 300 / SECONDS_PER_TRADING_YEAR
    prices = [units_of("5000.00")] + [walk.step() for _ in range(10_000)]

    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]

    assert statistics.stdev(returns) == pytest.approx(SEED_MODELS["MSFT"].sigma * math.sqrt(dt), rel=0.1)
