"""A symbol that Redis sets back (a failover promoted a replica that missed the processor's
last commits) is fenced out at the next commit: the processor reads it again and fills the
hole from the tick stream, so its history has no gap and no duplicate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import redis

from stockctl.wire import names
from tests.support.stack import Daemon, Servers, make_settings, wait_for

pytestmark = pytest.mark.integration


def _seqs(r: redis.Redis, symbol: str) -> list[int]:
    return [msgspec.json.decode(p)[2] for p in r.lrange(names.history_key(symbol), 0, -1)]


def test_a_symbol_set_back_by_redis_is_refilled_from_the_stream(
    clean: Servers, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange: prices flowing; a copy of AAPL's keys part way
    settings = make_settings(clean, tmp_path / "home", symbols=["AAPL"], rate=20)
    r = redis.Redis.from_url(clean.redis_url)
    daemons("publisher", settings)
    processor = daemons("processor", settings)
    wait_for(lambda: len(_seqs(r, "AAPL")) >= 10, 20, what="AAPL history")
    keys = [names.quote_key("AAPL"), names.history_key("AAPL"), names.signals_key("AAPL")]
    keys += [names.candles_key("AAPL", iv) for iv in settings.candle_intervals]
    saved = {key: r.dump(key) for key in keys if r.exists(key)}
    set_back_to = _seqs(r, "AAPL")[-1]
    wait_for(lambda: _seqs(r, "AAPL")[-1] >= set_back_to + 20, 20, what="20 more ticks")

    # Act: Redis "loses" the last commits
    for key in keys:
        r.delete(key)
    for key, value in saved.items():
        r.restore(key, 0, value)
    wait_for(lambda: _seqs(r, "AAPL")[-1] >= set_back_to + 60, 30, what="prices past the set-back")

    # Assert: one run of seqs, no hole where the lost commits were, none twice
    seqs = _seqs(r, "AAPL")
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    status = json.loads(processor.status_path.read_text())
    assert status["counters"]["redis_errors"] >= 1, status  # the fence turned the commit down
