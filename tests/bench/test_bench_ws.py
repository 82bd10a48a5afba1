"""``stockctl bench ws``: a real (short) run end to end, nothing left running after it, and its parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockctl.bench.ws import WsBenchOptions, hist_percentile, parse_symbols
from stockctl.bench.ws_client import client_frame
from stockctl.errors import UsageError
from tests.support.bench import linux_only, run_private_bench


@pytest.mark.integration
@pytest.mark.timeout(200)
@linux_only
def test_bench_ws_quick_json(tmp_path: Path) -> None:
    # Afterwards every server, daemon and client worker it started must be gone, and so must its temporary directory.
    doc = run_private_bench("ws", tmp_path, timeout=180)

    for key in ("clients", "connected", "msgs_per_s", "p50_ms", "p99_ms", "dropped", "connect_s", "cpu", "targets"):
        assert key in doc, key
    assert doc["clients"] == 50
    assert doc["connected"] == doc["clients"]
    assert doc["dropped"] == 0, (doc["fail_reasons"], doc["close_reasons"])
    assert doc["msgs_per_s"] > 0
    assert 0 < doc["p50_ms"] <= doc["p99_ms"] <= doc["max_ms"]
    assert doc["connect_s"] > 0 and 0 < doc["connect_p50_ms"] <= doc["connect_p99_ms"]
    # Every client got (nearly) every quote published on its channel in the window.
    assert doc["expected"] > 0
    assert doc["quotes"] >= 0.9 * doc["expected"], doc
    assert "gateway" in doc["cpu"] and "workers" in doc["cpu"]


def test_client_frames_are_masked_and_sized() -> None:
    for size in (0, 5, 125, 126, 400, 70_000):
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        frame = client_frame(0x1, payload)
        assert frame[0] == 0x81
        assert frame[1] & 0x80  # a client always masks
        length, offset = frame[1] & 0x7F, 2
        if length == 126:
            length, offset = int.from_bytes(frame[2:4], "big"), 4
        elif length == 127:
            length, offset = int.from_bytes(frame[2:10], "big"), 10
        assert length == size
        key, body = frame[offset : offset + 4], frame[offset + 4 :]
        assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == payload


def test_hist_percentile_nearest_rank() -> None:
    hist = {i: 1 for i in range(1, 101)}
    assert hist_percentile(hist, 0.50) == 50
    assert hist_percentile(hist, 0.99) == 99
    assert hist_percentile({3: 98, 70: 2}, 0.99) == 70
    assert hist_percentile({7: 1}, 0.5) == 7
    with pytest.raises(ValueError):
        hist_percentile({}, 0.5)


def test_options_are_checked() -> None:
    assert parse_symbols(" aapl, MSFT,aapl,, ") == ["AAPL", "MSFT"]
    WsBenchOptions().check()
    WsBenchOptions.quick().check()
    for bad in (
        WsBenchOptions(clients=0),
        WsBenchOptions(seconds=0),
        WsBenchOptions(rate=0),
        WsBenchOptions(symbols=[]),
        WsBenchOptions(symbols=["A..B"]),
        WsBenchOptions(symbols=["AAPL"], channels_per_client=2),
        WsBenchOptions(workers=0),
    ):
        with pytest.raises(UsageError):
            bad.check()
