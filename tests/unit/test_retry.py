"""The one retry helper: backoff bounds and jitter, and the rules of :func:`retry`."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from stockctl.runtime.retry import BACKOFF, Backoff, Stopped, pause, retry

FAST = Backoff(base=0.001, cap=0.004)


@pytest.mark.parametrize("policy", [BACKOFF, Backoff(base=0.5, cap=30.0), Backoff(base=0.2, cap=1.0, jitter=0.25)])
def test_every_delay_lies_in_the_jittered_band_below_the_capped_exponential(policy: Backoff) -> None:
    for attempt in range(40):
        ceiling = min(policy.cap, policy.base * 2**attempt)
        assert policy.ceiling(attempt) == pytest.approx(ceiling)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all((1 - policy.jitter) * ceiling <= d <= ceiling for d in delays), (attempt, min(delays))


def test_delays_are_jittered_not_in_step() -> None:
    delays = [Backoff(base=0.5, cap=30.0).delay(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 100
    assert all(15 <= Backoff(base=0.5, cap=30.0).delay(30) <= 30 for _ in range(50))
    assert Backoff(base=0.5, cap=30.0, jitter=0.0).delay(2) == 2.0  # no jitter: exactly the exponential


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert BACKOFF.ceiling(10**9) == BACKOFF.cap
    assert BACKOFF.ceiling(-1) == BACKOFF.base


async def test_retry_returns_the_result_after_failures_telling_on_error_each_attempt() -> None:
    seen: list[tuple[str, int]] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError(f"down {calls}")
        return "up"

    result = await retry(flaky, stop=asyncio.Event(), backoff=FAST, on_error=lambda exc, n: seen.append((str(exc), n)))

    assert result == "up" and calls == 4
    assert seen == [("down 1", 0), ("down 2", 1), ("down 3", 2)]


async def test_an_async_on_error_is_awaited() -> None:
    awaited: list[int] = []
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("once")
        return calls

    async def on_error(exc: Exception, attempt: int) -> None:
        await asyncio.sleep(0)
        awaited.append(attempt)

    assert await retry(flaky, stop=None, backoff=FAST, on_error=on_error) == 2
    assert awaited == [0]


async def test_a_failure_not_in_retry_on_propagates_at_once() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await retry(broken, stop=asyncio.Event(), backoff=FAST, retry_on=ConnectionError)
    assert calls == 1


async def test_stop_cuts_the_sleep_short_and_raises_stopped() -> None:
    stop = asyncio.Event()
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    with pytest.raises(Stopped):
        await retry(down, stop=stop, backoff=Backoff(base=10.0, cap=10.0))  # would sleep 5-10 s

    assert time.monotonic() - started < 2.0 and calls == 1


async def test_the_first_attempt_is_made_even_when_already_stopping() -> None:
    stop = asyncio.Event()
    stop.set()

    async def works() -> str:
        return "done"

    async def down() -> None:
        raise ConnectionError("down")

    assert await retry(works, stop=stop) == "done"
    with pytest.raises(Stopped):
        await retry(down, stop=stop, backoff=FAST)


async def test_past_the_deadline_the_last_failure_is_raised() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"down {calls}")

    started = time.monotonic()
    with pytest.raises(ConnectionError, match="down"):
        await retry(down, stop=None, backoff=Backoff(base=0.02, cap=0.02), deadline=time.monotonic() + 0.2)

    assert 0.15 <= time.monotonic() - started < 1.0 and calls > 2


async def test_only_the_first_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 5:
            raise ConnectionError("refused")

    with caplog.at_level(logging.WARNING):
        await retry(flaky, stop=None, backoff=FAST, what="JetStream", logger=logging.getLogger("t"))

    assert [r.getMessage() for r in caplog.records] == ["JetStream not ready (refused); retrying"]


async def test_pause_says_whether_it_was_stopped() -> None:
    stop = asyncio.Event()
    assert await pause(0.01, stop) is False
    stop.set()
    started = time.monotonic()
    assert await pause(10.0, stop) is True and time.monotonic() - started < 1.0
    assert await pause(0.0) is False
