"""Shell completion without a running instance: the configured lists, at once, never an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockctl.cli import complete
from stockctl.components import COMPONENTS, LOG_SOURCES


@pytest.fixture(autouse=True)
def no_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STOCKCTL_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("STOCKCTL_GATEWAY_URL", raising=False)
    monkeypatch.delenv("STOCKCTL_MARKETS_FILE", raising=False)
    return home


def test_symbols_fall_back_to_the_configured_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKCTL_SYMBOLS", "AAPL,AMZN,TSLA")

    assert complete.complete_symbols(None, "a") == ["AAPL", "AMZN"]  # type: ignore[arg-type]
    assert complete.complete_symbols(None, "") == ["AAPL", "AMZN", "TSLA"]  # type: ignore[arg-type]


def test_markets_fall_back_to_the_markets_file_or_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert complete.complete_markets(None, "") == ["JIO_INR", "TATA_INR"]  # type: ignore[arg-type]

    spec = {"base": "BTC", "quote": "USD", "tick_size": "0.01", "lot_size": "0.001", "min_qty": "0.001"}
    markets = [{"symbol": "BTC_USD", **spec, "max_qty": "100", "max_price": "1000000"}]
    (tmp_path / "markets.json").write_text(json.dumps(markets))
    monkeypatch.setenv("STOCKCTL_MARKETS_FILE", str(tmp_path / "markets.json"))

    assert complete.complete_markets(None, "b") == ["BTC_USD"]  # type: ignore[arg-type]


def test_an_unreachable_gateway_falls_back_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: an instance record whose gateway does not answer (a blackhole port)
    monkeypatch.setenv("STOCKCTL_GATEWAY_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("STOCKCTL_SYMBOLS", "MSFT")

    started = time.monotonic()
    assert complete.complete_symbols(None, "") == ["MSFT"]  # type: ignore[arg-type]

    assert time.monotonic() - started < complete.TIMEOUT_S + 1


def test_broken_settings_complete_nothing_rather_than_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKCTL_NATS_PORT", "not a port")

    assert complete.complete_symbols(None, "") == []  # type: ignore[arg-type]


def test_component_names_are_the_supervisors() -> None:
    assert complete.complete_components("") == list(COMPONENTS)
    assert complete.complete_components("nats,re") == ["nats,redis"]
    assert complete.complete_components("nats,redis,p") == ["nats,redis,publisher", "nats,redis,processor"]
    assert complete.complete_log_sources("su") == ["supervisor"]
    assert complete.complete_log_sources("") == list(LOG_SOURCES)


def test_restart_completes_what_the_supervisor_runs(no_instance: Path) -> None:
    assert complete.complete_running(None, "") == list(COMPONENTS)  # type: ignore[arg-type]

    (no_instance / "run").mkdir(parents=True)
    state = {"components": [{"name": "nats"}, {"name": "redis"}, {"name": "processor"}]}
    (no_instance / "run" / "state.json").write_text(json.dumps(state))

    assert complete.complete_running(None, "") == ["nats", "redis", "processor"]  # type: ignore[arg-type]


def test_setting_names_complete_for_config_set() -> None:
    assert complete.complete_setting("gateway") == ["gateway_port"]
    assert "tui.keys." in complete.complete_setting("tui")


def test_a_real_bash_completion_of_a_component(no_instance: Path) -> None:
    # The shell's mechanism: the completion variable and the words so far, the console script
    script = Path(sys.executable).parent / "stockctl"
    env = {**os.environ, "_STOCKCTL_COMPLETE": "complete_bash", "COMP_WORDS": "stockctl logs pro", "COMP_CWORD": "2"}

    out = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["processor"]
