"""The example bots in examples/ against a real instance with market makers and 10 s tokens.

All three run at once against one instance for 30 s (three token lifetimes), each as a user
runs it (``python examples/NAME.py --seconds 30``, the instance found through STOCKCTL_HOME,
a fresh demo account each). Each must place orders, get fills, renew its token past three
lifetimes without an auth error, stop by itself and print its summary line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from stockctl.instance.registry import write_instance
from tests.support.cli import cli_env
from tests.support.stack import REPO, stack_settings, wipe_exchange

pytestmark = pytest.mark.integration

TTL_S = 10
RUN_S = 30
SUMMARY = re.compile(
    r"^(?P<name>\w+): orders=(?P<orders>\d+) fills=(?P<fills>\d+) position=(?P<position>[-+0-9.]+) TATA"
    r" pnl=(?P<pnl>-?[0-9.]+) INR renewals=(?P<renewals>\d+) seconds=(?P<seconds>[0-9.]+)$",
    re.M,
)
BOTS = {
    "sma_crossover": ["--fast", "3", "--slow", "8", "--cooldown", "1"],
    "market_maker": ["--every", "1"],
    "book_imbalance": ["--threshold", "0.1"],
}


@pytest.mark.timeout(150)
def test_every_example_bot_trades_for_30_s_and_outlives_its_tokens(clean, tmp_path: Path, daemons) -> None:
    # Arrange: matching, processor, auth (10 s tokens), gateway and the liquidity daemon's makers.
    wipe_exchange(clean)
    settings = stack_settings(clean, tmp_path / "home", symbols=["AAPL"], access_token_ttl_s=TTL_S, seed=5)
    write_instance(settings)
    for name in ("matching", "processor", "auth", "gateway", "liquidity"):
        daemons(name, settings)
    env = {**cli_env(settings, tmp_path / "config"), "STOCKCTL_ACCESS_TOKEN_TTL_S": str(TTL_S)}

    # Act: the three bots side by side, as a user starts them.
    procs = {
        name: subprocess.Popen(
            [sys.executable, f"examples/{name}.py", "--seconds", str(RUN_S), *extra],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, extra in BOTS.items()
    }
    results = {name: (p.wait(RUN_S + 60), *p.communicate()) for name, p in procs.items()}

    # Assert: each stopped by itself with a summary of real trading, past three token lifetimes.
    for name, (rc, out, err) in results.items():
        assert rc == 0, f"{name} exited {rc}:\n{err}"
        assert "Traceback" not in err and "not logged in" not in err, err
        lines = [m.groupdict() for m in SUMMARY.finditer(out)]
        assert len(lines) == 1 and lines[0]["name"] == name, out
        s = lines[0]
        print(f"\n{out.splitlines()[-1]}")
        assert int(s["orders"]) >= 1 and int(s["fills"]) >= 1, out
        assert RUN_S <= float(s["seconds"]) < RUN_S + 10, s
        assert int(s["renewals"]) >= RUN_S // TTL_S, s  # renewed before each token ran out
        Decimal(s["pnl"])  # exact decimals: no float noise, no exponent
        assert "E" not in s["pnl"]
