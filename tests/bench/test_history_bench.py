"""``stockctl bench history --quick --json``: SQLite and a real PostgreSQL, every tick read back."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.pg import pg_server, pg_url  # noqa: F401  (fixtures)


def test_bench_history_quick_json_writes_and_reads_back_every_tick(pg_url: str) -> None:  # noqa: F811
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "stockctl",
            "bench",
            "history",
            "--ticks",
            "20000",
            "--batch",
            "2000",
            "--url",
            pg_url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [b["backend"] for b in doc["backends"]] == ["sqlite", "postgres"]
    for b in doc["backends"]:
        assert b["ticks"] == b["read_back"] == 20_000
        assert b["write_per_s"] > 0 and b["raw_write_per_s"] > 0 and b["read_per_s"] > 0
        assert 0 < b["write_ratio"] == round(b["write_per_s"] / b["raw_write_per_s"], 3)
        assert b["candles_1m"] == 1  # 20,000 ticks 1 ms apart from 20 s into a minute: one 1m bucket
    assert "secret" not in out.stdout
