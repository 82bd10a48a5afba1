"""publisher -> JetStream -> processor -> Redis, with real servers and real daemon processes."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import nats
import pytest
import redis

from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.marketdata import PricePoint, Tick, candle_decoder, point_decoder, signal_decoder, tick_decoder
from tests.support.stack import make_settings, wait_for
from tests.support.streams import read_stream

pytestmark = pytest.mark.integration

PARTITIONS = Settings.model_fields["partitions"].default


def r_of(srv) -> redis.Redis:
    return redis.Redis.from_url(srv.redis_url)


def status_of(d) -> dict:
    try:
        return json.loads(d.status_path.read_text())
    except (OSError, ValueError):
        return {}


def quote_seq(r: redis.Redis, sym: str) -> int:
    raw = r.hget(names.quote_key(sym), "seq")
    return int(raw) if raw else 0


def history(r: redis.Redis, sym: str) -> list[PricePoint]:
    return [point_decoder.decode(b) for b in r.lrange(names.history_key(sym), 0, -1)]


def stream_ticks_of(url: str, sym: str) -> list[Tick]:
    """Every tick of ``sym`` in the JetStream stream, read independently of the processor."""
    return [tick_decoder.decode(b) for b in read_stream(url, names.TICK_STREAM, names.tick_subject(sym, PARTITIONS))]


def naive_mean(prices: list[str]) -> str:
    mean = sum(Decimal(p) for p in prices) / len(prices)
    return str(mean.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


def naive_signals(prices: list[str], fast: int, slow: int) -> list[tuple[int, str]]:
    """(index, side) of every crossover, from plain Decimal means: an independent oracle."""
    out, relation = [], 0
    for i in range(slow - 1, len(prices)):
        f = sum(Decimal(p) for p in prices[i - fast + 1 : i + 1]) / fast
        s = sum(Decimal(p) for p in prices[i - slow + 1 : i + 1]) / slow
        rel = (f > s) - (f < s)
        if rel != 0:
            if relation < 0 < rel:
                out.append((i, "BUY"))
            elif relation > 0 > rel:
                out.append((i, "SELL"))
            relation = rel
    return out


def test_ticks_become_quotes_history_candles_and_signals(clean, tmp_path: Path, daemons) -> None:
    # Arrange: a seeded, fast, volatile stream so crossovers happen within a few hundred ticks.
    n = 300
    settings = make_settings(
        clean, tmp_path / "home", rate=200, seed=7, publish_limit=n, sim_speed=20_000, sma_fast=5, sma_slow=12
    )
    r = r_of(clean)

    # Act
    daemons("processor", settings)
    daemons("publisher", settings)
    for sym in settings.symbols:
        wait_for(lambda sym=sym: quote_seq(r, sym) == n, 30, what=f"{sym} processed")

    # Assert
    for sym in settings.symbols:
        ticks = stream_ticks_of(clean.nats_url, sym)
        assert [t.seq for t in ticks] == list(range(1, n + 1))
        hist = history(r, sym)
        assert [(p.price, p.ts, p.seq) for p in hist] == [(t.price, t.ts, t.seq) for t in ticks]

        quote = {k.decode(): v.decode() for k, v in r.hgetall(names.quote_key(sym)).items()}
        prices = [t.price for t in ticks]
        assert quote["price"] == prices[-1]
        assert quote["sma_fast"] == naive_mean(prices[-5:])
        assert quote["sma_slow"] == naive_mean(prices[-12:])
        assert Decimal(quote["high"]) == max(Decimal(p) for p in prices)
        assert Decimal(quote["low"]) == min(Decimal(p) for p in prices)
        assert int(quote["volume"]) == sum(t.volume for t in ticks)

        candles = [candle_decoder.decode(b) for b in r.zrange(names.candles_key(sym, "1s"), 0, -1)]
        assert sum(c.count for c in candles) == n
        assert sum(c.volume for c in candles) == sum(t.volume for t in ticks)
        assert candles[0].open == prices[0] and candles[-1].close == prices[-1]

        signals = [signal_decoder.decode(b) for b in r.lrange(names.signals_key(sym), 0, -1)]
        expected = naive_signals(prices, 5, 12)
        assert expected, "the seeded stream should cross at least once"
        assert [(s.seq, s.side) for s in signals] == [(ticks[i].seq, side) for i, side in expected]


def test_processor_kill9_mid_stream_loses_and_duplicates_nothing(clean, tmp_path: Path, daemons) -> None:
    # Arrange
    n = 600
    settings = make_settings(clean, tmp_path / "home", rate=150, seed=11, publish_limit=n, history_limit=2000)
    r = r_of(clean)
    proc = daemons("processor", settings)
    daemons("publisher", settings)
    wait_for(lambda: quote_seq(r, "AAPL") > 100, 20, what="some ticks processed")

    # Act: kill -9 mid-stream, let ticks pile up, start a new processor.
    proc.kill()
    seq_at_kill = quote_seq(r, "AAPL")
    wait_for(lambda: len(stream_ticks_of(clean.nats_url, "AAPL")) >= seq_at_kill + 100, 20, what="backlog")
    daemons("processor", settings)
    for sym in settings.symbols:
        wait_for(lambda sym=sym: quote_seq(r, sym) == n, 40, what=f"{sym} caught up")

    # Assert: exactly the stream's ticks, in order, each once; counters not double counted.
    assert seq_at_kill < n
    for sym in settings.symbols:
        ticks = stream_ticks_of(clean.nats_url, sym)
        assert [p.seq for p in history(r, sym)] == list(range(1, n + 1))
        candles = [candle_decoder.decode(b) for b in r.zrange(names.candles_key(sym, "1s"), 0, -1)]
        assert sum(c.count for c in candles) == n
        assert int(r.hget(names.quote_key(sym), "volume")) == sum(t.volume for t in ticks)


def test_processor_crash_mid_batch_before_or_after_commit_leaves_no_gap_and_no_duplicate(
    clean, tmp_path: Path, daemons
) -> None:
    # Arrange: a backlog builds while the processor is down, so every batch after a restart is full
    n = 2000
    settings = make_settings(
        clean, tmp_path / "home", rate=200, seed=13, publish_limit=n, history_limit=5000, processor_batch=100
    )
    r = r_of(clean)
    proc = daemons("processor", settings)
    daemons("publisher", settings)
    wait_for(lambda: quote_seq(r, "AAPL") > 200, 20, what="some ticks processed")

    # Act: crash at the two worst moments of a batch: planned but not committed (its ticks must
    # come back), then committed to Redis but not acked (they come back too, and must be skipped)
    proc.kill()
    for point in ("processor.before_commit@3", "processor.after_commit@2"):
        time.sleep(0.5)  # ticks keep arriving in the stream meanwhile
        proc.crash_at(point)
    proc.start()
    for sym in settings.symbols:
        wait_for(lambda sym=sym: quote_seq(r, sym) == n, 60, what=f"{sym} caught up")
    # The batch committed but not acked is redelivered after the consumer's ack wait (30 s),
    # when everything is already stored: wait until it has been seen and skipped.
    counters = wait_for(
        lambda: (status_of(proc).get("counters") or {}).get("duplicate", 0) > 0 and status_of(proc)["counters"],
        60,
        what="the redelivered batch skipped",
    )

    # Assert: every tick of the stream once, in order; candles and volume folded each tick once
    assert counters["duplicate"] > 0
    for sym in settings.symbols:
        ticks = stream_ticks_of(clean.nats_url, sym)
        assert [t.seq for t in ticks] == list(range(1, n + 1))
        assert [(p.seq, p.price, p.ts) for p in history(r, sym)] == [(t.seq, t.price, t.ts) for t in ticks]
        candles = [candle_decoder.decode(b) for b in r.zrange(names.candles_key(sym, "1s"), 0, -1)]
        assert sum(c.count for c in candles) == n
        assert int(r.hget(names.quote_key(sym), "volume")) == sum(t.volume for t in ticks)


def test_publisher_restart_continues_sequence_and_price(clean, tmp_path: Path, daemons) -> None:
    # Arrange
    settings = make_settings(clean, tmp_path / "home", rate=100, publish_limit=20)
    pub = daemons("publisher", settings)
    wait_for(lambda: len(stream_ticks_of(clean.nats_url, "MSFT")) == 20, 20, what="first run")
    assert pub.terminate() == 0

    # Act
    daemons("publisher", settings)
    wait_for(lambda: len(stream_ticks_of(clean.nats_url, "MSFT")) == 40, 20, what="second run")

    # Assert: sequence carries on, and the walk starts from where it stopped.
    ticks = stream_ticks_of(clean.nats_url, "MSFT")
    assert [t.seq for t in ticks] == list(range(1, 41))
    jump = abs(Decimal(ticks[20].price) / Decimal(ticks[19].price) - 1)
    assert jump < Decimal("0.02")


def test_csv_replay_drives_history_with_csv_timestamps(clean, tmp_path: Path, daemons) -> None:
    # Arrange
    csv = tmp_path / "day.csv"
    rows = [
        ("2024-03-01T14:30:00Z", "IBM", "185.10", "100"),
        ("2024-03-01T14:30:00.5Z", "ORCL", "112.00", "50"),
        ("2024-03-01T14:30:01Z", "IBM", "185.25", "200"),
        ("2024-03-01T14:30:02Z", "IBM", "184.90", ""),
        ("2024-03-01T14:31:05Z", "ORCL", "112.40", "10"),
    ]
    csv.write_text("timestamp,symbol,price,volume\n" + "\n".join(",".join(r) for r in rows) + "\n")
    settings = make_settings(clean, tmp_path / "home", replay_csv=csv, replay_speed=0, symbols=["IBM", "ORCL"])
    r = r_of(clean)

    # Act
    daemons("processor", settings)
    daemons("publisher", settings)
    wait_for(lambda: quote_seq(r, "IBM") == 3 and quote_seq(r, "ORCL") == 2, 20, what="replayed")

    # Assert
    assert [p.price for p in history(r, "IBM")] == ["185.10", "185.25", "184.90"]
    ibm_ts = [p.ts for p in history(r, "IBM")]
    assert ibm_ts[0] == 1709303400 * 10**9 and ibm_ts[1] - ibm_ts[0] == 10**9
    minute = [candle_decoder.decode(b) for b in r.zrange(names.candles_key("ORCL", "1m"), 0, -1)]
    assert [(c.open, c.close, c.volume) for c in minute] == [("112.00", "112.00", 50), ("112.40", "112.40", 10)]


def test_replay_with_a_bad_row_fails_fast_naming_the_line(clean, tmp_path: Path, daemons) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("2024-03-01T14:30:00Z,IBM,185.10\n2024-03-01T14:30:01Z,IBM,NaN\n")
    settings = make_settings(clean, tmp_path / "home", replay_csv=csv)

    pub = daemons("publisher", settings, wait_ready=False)
    code = pub.proc.wait(20)

    assert code == 78
    assert "bad.csv:2" in pub.log() and "NaN" in pub.log()


def test_sigterm_drains_and_exits_zero(clean, tmp_path: Path, daemons) -> None:
    settings = make_settings(clean, tmp_path / "home", rate=50)
    procs = [daemons("processor", settings), daemons("publisher", settings)]

    codes = [d.terminate(timeout=15) for d in procs]

    assert codes == [0, 0]
    assert all("stopped" in d.log() for d in procs)
    assert not any(d.status_path.exists() for d in procs)


def test_processor_rides_out_a_redis_restart(own_servers, tmp_path: Path, daemons) -> None:
    # Arrange
    n = 500
    settings = make_settings(own_servers, tmp_path / "home", rate=100, publish_limit=n, seed=3)
    r = r_of(own_servers)
    proc = daemons("processor", settings)
    daemons("publisher", settings)
    wait_for(lambda: quote_seq(r, "AAPL") > 50, 20, what="ticks flowing")

    # Act: Redis goes away for two seconds (SIGKILL: no final fsync), then comes back on its AOF.
    own_servers.redis.kill()
    wait_for(lambda: "Redis failing" in proc.log(), 15, what="processor notices")
    import time

    time.sleep(2)
    own_servers.redis.start()
    r = r_of(own_servers)
    for sym in settings.symbols:
        wait_for(lambda sym=sym: quote_seq(r, sym) == n, 40, what=f"{sym} caught up")

    # Assert: history intact and contiguous; the outage is logged once, not per retry.
    for sym in settings.symbols:
        seqs = [p.seq for p in history(r, sym)]
        assert seqs == list(range(seqs[0], n + 1)) and len(seqs) == len(set(seqs))
    log = proc.log()
    assert log.count("Redis failing") == 1
    assert "Redis ok" in log


def publish_raw(url: str, ticks: list[Tick]) -> None:
    """Store ``ticks`` in the tick stream in exactly this order, as a publisher retrying would."""
    from stockctl.wire.marketdata import encode

    async def send() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            for t in ticks:
                await js.publish(
                    names.tick_subject(t.symbol, PARTITIONS), encode(t), headers={"Nats-Msg-Id": f"{t.symbol}:{t.seq}"}
                )
        finally:
            await nc.close()

    asyncio.run(send())


def test_a_tick_stored_late_is_applied_in_order_without_waiting_out_the_grace(clean, tmp_path: Path, daemons) -> None:
    # Arrange: MSFT 52 is stored 150 messages after 53, as after a NATS restart (a tick lost
    # by the stopping server, resent behind the ones nats-py flushed on reconnect).
    seqs = [*range(1, 52), *range(53, 203), 52, *range(203, 301)]
    ticks = [Tick("MSFT", f"{300 + n % 7}.25", 1_700_000_000_000_000_000 + n * 10**6, n, 1) for n in seqs]
    settings = make_settings(clean, tmp_path / "home", symbols=["MSFT"])
    r = r_of(clean)

    proc = daemons("processor", settings)  # it makes the stream

    # Act
    publish_raw(clean.nats_url, ticks)

    # Assert: every tick once, in tick order, well inside the 15 s grace (nothing given up on)
    wait_for(lambda: quote_seq(r, "MSFT") == 300, 10, what="MSFT 300 applied")
    assert [p.seq for p in history(r, "MSFT")] == list(range(1, 301))
    assert "giving up" not in proc.log()
    wait_for(
        lambda: json.loads(proc.status_path.read_text())["counters"].get("gap_filled", 0) >= 150,
        5,
        what="the 150 held ticks counted as filled in status",
    )


def test_processor_rides_out_a_nats_restart(own_servers, tmp_path: Path, daemons) -> None:
    # Arrange
    n = 500
    settings = make_settings(own_servers, tmp_path / "home", rate=100, publish_limit=n, seed=5)
    r = r_of(own_servers)
    proc = daemons("processor", settings)
    pub = daemons("publisher", settings)
    wait_for(lambda: quote_seq(r, "AAPL") > 50, 20, what="ticks flowing")

    # Act
    own_servers.nats.stop()
    wait_for(lambda: "disconnected" in proc.log() and "disconnected" in pub.log(), 15, what="disconnect seen")
    own_servers.nats.start()
    for sym in settings.symbols:
        wait_for(lambda sym=sym: quote_seq(r, sym) == n, 60, what=f"{sym} caught up")

    # Assert: every tick exactly once, in order.
    for sym in settings.symbols:
        assert [p.seq for p in history(r, sym)] == list(range(1, n + 1))
    assert proc.log().count("disconnected") == 1
    # The publisher resent what the old server lost at once, without stalling on acks that
    # never come (a 5 s stall showed as "pace behind: skipping ... ticks").
    assert "pace behind" not in pub.log() and "giving up" not in proc.log()
    status = json.loads(proc.status_path.read_text())
    assert status["counters"].get("ticks", 0) >= 1
