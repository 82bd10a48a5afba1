"""Several processors share the tick partitions by lease (NATS KV), with 2 s leases: they
split them, one that dies or stalls loses its partitions to the other within the lease time,
and the price history stays whole (no gap, no duplicate) through every move."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import nats
import pytest
import redis

from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.marketdata import Tick, encode, tick_decoder
from stockctl.wire.streams import ensure_tick_stream
from tests.support.stack import Daemon, Servers, make_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LEASE_S = 2.0
# Symbols that land in every one of the 8 partitions, so each partition has ticks.
SYMBOLS = ["ADBE", "META", "UBER", "MSFT", "AAPL", "JPM", "AMZN", "TSLA", "NVDA", "KO"]


def _settings(srv: Servers, home: Path) -> Settings:
    return make_settings(srv, home, symbols=SYMBOLS, rate=10, processor_lease_s=LEASE_S, partitions=8)


def _partitions(d: Daemon) -> list[int]:
    try:
        return list(json.loads(d.status_path.read_text())["info"].get("partitions", []))
    except (OSError, ValueError):
        return []


def _split(a: Daemon, b: Daemon) -> bool:
    """Each holds 4, and together every partition once."""
    held_a, held_b = _partitions(a), _partitions(b)
    return len(held_a) == len(held_b) == 4 and sorted(held_a + held_b) == list(range(8))


def _whole(r: redis.Redis, symbol: str) -> list[int]:
    """The symbol's history seqs, asserting they run on with no gap and no duplicate."""
    seqs = [msgspec.json.decode(p)[2] for p in r.lrange(names.history_key(symbol), 0, -1)]
    if seqs:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{symbol}: {seqs}"
    return seqs


def _all_whole_past(r: redis.Redis, marks: dict[str, int], more: int) -> bool:
    return all((s := _whole(r, sym)) and s[-1] >= marks[sym] + more for sym, _ in marks.items())


def _marks(r: redis.Redis) -> dict[str, int]:
    return {sym: (_whole(r, sym) or [0])[-1] for sym in SYMBOLS}


def _two_processors(srv: Servers, tmp_path: Path, daemons: Callable[..., Daemon]) -> tuple[redis.Redis, Daemon, Daemon]:
    """A publisher and two processors of different homes (two hosts, as far as they know),
    once they have split the partitions 4/4."""
    daemons("publisher", _settings(srv, tmp_path / "pub"))
    a = daemons("processor", _settings(srv, tmp_path / "a"))
    b = daemons("processor", _settings(srv, tmp_path / "b"))
    wait_for(lambda: _split(a, b), 30, what="a 4/4 split")
    return redis.Redis.from_url(srv.redis_url), a, b


def test_symbols_cover_every_partition() -> None:
    assert {names.partition_of(s, 8) for s in SYMBOLS} == set(range(8))


def test_two_processors_split_the_partitions_and_the_survivor_takes_all(
    clean: Servers, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange / Assert: an even split, disjoint, covering every partition
    r, a, b = _two_processors(clean, tmp_path, daemons)
    marks = _marks(r)
    wait_for(lambda: _all_whole_past(r, marks, 10), 30, what="prices of every symbol, split")

    # Act: kill -9 one of them
    b.kill()
    killed = time.monotonic()
    wait_for(lambda: len(_partitions(a)) == 8, 10 * LEASE_S, what="the survivor holding every partition")
    moved = time.monotonic() - killed
    marks = _marks(r)
    wait_for(lambda: _all_whole_past(r, marks, 20), 30, what="prices of every symbol past the takeover")

    # Assert: the move took about the lease time; the histories are whole (checked in _whole)
    assert moved <= 4 * LEASE_S, f"partitions moved {moved:.1f} s after the kill"
    print(f"partitions moved {moved:.2f} s after kill -9 (lease {LEASE_S} s)")


def test_a_stalled_processor_loses_its_partitions_and_writes_nothing_stale(
    clean: Servers, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange
    r, a, b = _two_processors(clean, tmp_path, daemons)
    assert a.proc is not None

    # Act: freeze one for 3 lease times, then let it run again
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: len(_partitions(b)) == 8, 10 * LEASE_S, what="the other taking every partition")
        marks = _marks(r)
        wait_for(lambda: _all_whole_past(r, marks, 10), 30, what="prices while one processor is frozen")
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)

    # Assert: the frozen one gives up what it held, the two share again, and no history got a
    # stale write, a gap or a duplicate from the frozen one waking up mid-batch
    # (its status file may still show what it held before the freeze for a moment after it)
    wait_for(lambda: _split(a, b), 30, what="a 4/4 split again")
    marks = _marks(r)
    wait_for(lambda: _all_whole_past(r, marks, 20), 30, what="prices after the frozen one woke up")
    assert a.proc.poll() is None and b.proc is not None and b.proc.poll() is None


def test_a_publisher_upgraded_from_before_partitions_carries_on_the_sequence(
    clean: Servers, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    # Arrange: the stream as an older release left it, AAPL's last tick on md.tick.AAPL
    settings = make_settings(clean, tmp_path / "home", symbols=["AAPL"], rate=20)

    async def seed() -> None:
        nc = await nats.connect(clean.nats_url)
        try:
            js = nc.jetstream()
            await ensure_tick_stream(js, settings)
            old = Tick("AAPL", "187.25", time.time_ns(), 41)
            await js.publish(names.legacy_tick_subject("AAPL"), encode(old), headers={"Nats-Msg-Id": "AAPL:41"})
        finally:
            await nc.close()

    async def first_new() -> Tick:
        nc = await nats.connect(clean.nats_url)
        try:
            sub = await nc.jetstream().subscribe(names.tick_subject("AAPL", 8), ordered_consumer=True)
            msg = await sub.next_msg(timeout=20)
            return tick_decoder.decode(msg.data)
        finally:
            await nc.close()

    asyncio.run(seed())

    # Act
    daemons("publisher", settings)
    first = asyncio.run(first_new())

    # Assert: the sequence goes on from the old subject's last tick, on the partitioned subject
    assert first.seq == 42, first
