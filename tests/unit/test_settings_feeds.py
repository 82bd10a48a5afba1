"""Which daemons ``up --feed`` runs: feeds instead of the simulator, or beside it with ``--simulate``."""

from __future__ import annotations

import pytest

from stockctl.settings import Settings


def test_feeds_alone_leave_the_publisher_out(tmp_path) -> None:
    s = Settings(home=tmp_path, feeds="binance:BTCUSDT;coinbase:BTC-USD")
    names = s.components()
    assert "feeds" in names
    assert "publisher" not in names
    assert not s.runs_simulator
    assert s.to_env()["STOCKCTL_FEEDS"] == "binance:BTCUSDT;coinbase:BTC-USD"


def test_simulate_keeps_the_publisher_beside_the_feeds(tmp_path) -> None:
    s = Settings(home=tmp_path, feeds=["binance:BTCUSDT@aggTrade"], simulate=True, symbols="AAPL,BRK.B")
    names = s.components()
    assert names.index("publisher") < names.index("feeds")  # start order is DAEMONS' order
    assert {"processor", "history", "gateway"} <= set(names)
    assert s.runs_simulator
    # the daemons see the same choice through the environment the supervisor hands them
    child = Settings(**{k.removeprefix("STOCKCTL_").lower(): v for k, v in s.to_env().items()})
    assert child.components() == names


def test_no_feed_means_no_feeds_daemon(tmp_path) -> None:
    names = Settings(home=tmp_path).components()
    assert "publisher" in names
    assert "feeds" not in names


@pytest.mark.parametrize("fed", ["binance:ETHUSDT,btcusdt", "coinbase:BTC-USD"])
def test_a_symbol_both_simulated_and_fed_is_refused(tmp_path, fed: str) -> None:
    sym = "BTCUSDT" if fed.startswith("binance") else "BTC-USD"
    with pytest.raises(ValueError, match=f"{sym} would be both simulated and fed live; drop it from --symbols"):
        Settings(home=tmp_path, symbols=f"AAPL,{sym}", feeds=[fed], simulate=True)
    # without --simulate the simulator is off, so the same symbols are fine
    assert "publisher" not in Settings(home=tmp_path, symbols=f"AAPL,{sym}", feeds=[fed]).components()
