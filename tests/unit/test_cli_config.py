"""The config file: read by Settings below the environment, edited by ``stockctl config set``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stockctl.cli.config import set_value
from stockctl.errors import UsageError
from stockctl.settings import Settings, config_path, load_settings, setting_origins

CONFIG = """\
# my sandbox
gateway_port = 8800  # away from the default
symbols = ["aapl", "MSFT"]
rate = 2.5

[tui]
theme = "nord"

[tui.keys]
quit = "ctrl+q"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("STOCKCTL_CONFIG", str(path))
    for name in ("STOCKCTL_GATEWAY_PORT", "STOCKCTL_SYMBOLS", "STOCKCTL_RATE", "STOCKCTL_TUI_THEME"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.parent.mkdir()
    config.write_text(CONFIG)
    monkeypatch.setenv("STOCKCTL_RATE", "7")

    s = load_settings(symbols="TSLA")

    assert s.symbols == ["TSLA"]  # flag over file
    assert s.rate == 7.0  # env over file
    assert s.gateway_port == 8800  # file over default
    assert s.auth_port == 8701  # default
    assert (s.tui_theme, s.tui_keys) == ("nord", {"quit": "ctrl+q"})  # the [tui] table
    origins = setting_origins(symbols="TSLA")
    assert [origins[k] for k in ("symbols", "rate", "gateway_port", "auth_port", "tui_keys")] == [
        "flag",
        "env",
        "file",
        "default",
        "file",
    ]


def test_the_file_is_found_in_xdg_config_home_without_stockctl_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STOCKCTL_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "stockctl").mkdir()
    (tmp_path / "stockctl" / "config.toml").write_text("auth_port = 9701\n")

    assert config_path() == tmp_path / "stockctl" / "config.toml"
    assert Settings().auth_port == 9701


def test_tui_settings_reach_daemons_and_the_tui_through_the_environment(config: Path) -> None:
    config.parent.mkdir()
    config.write_text(CONFIG)
    env = load_settings().to_env()

    assert json.loads(env["STOCKCTL_TUI_KEYS"]) == {"quit": "ctrl+q"}
    os.environ.update(env)
    try:
        assert Settings(_env_file=None).tui_keys == {"quit": "ctrl+q"}
    finally:
        for key in env:
            os.environ.pop(key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gatway_port = 1\n", "unknown setting 'gatway_port' in"),
        ("[tui]\ncolour = 'red'\n", "unknown setting 'tui.colour' in"),
        ("tui_theme = 'nord'\n", "unknown setting 'tui_theme' in"),  # it lives in [tui]
        ("symbols = [\n", "bad config file"),
    ],
)
def test_a_bad_file_is_an_error_naming_it(config: Path, text: str, message: str) -> None:
    config.parent.mkdir()
    config.write_text(text)

    with pytest.raises(UsageError) as err:
        load_settings()

    assert message in str(err.value) and str(config) in str(err.value)


def test_set_writes_the_checked_value_keeping_comments_atomically_and_private(config: Path) -> None:
    config.parent.mkdir()
    config.write_text(CONFIG)
    config.chmod(0o644)

    assert set_value(config, "gateway-port", "8900") == 8900
    assert set_value(config, "symbols", "tsla, amzn") == ["TSLA", "AMZN"]
    assert set_value(config, "tui.keys.toggle_theme", "f2") == {"quit": "ctrl+q", "toggle_theme": "f2"}
    assert set_value(config, "tui.theme", "gruvbox") == "gruvbox"
    assert set_value(config, "log_level", "DEBUG") == "DEBUG"

    text = config.read_text()
    assert "# my sandbox" in text and "# away from the default" in text
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert not [p for p in config.parent.iterdir() if p.name != "config.toml"]  # no temp file left
    s = load_settings()
    assert (s.gateway_port, s.symbols, s.log_level, s.tui_theme) == (8900, ["TSLA", "AMZN"], "DEBUG", "gruvbox")
    assert s.tui_keys == {"quit": "ctrl+q", "toggle_theme": "f2"}


def test_set_creates_the_file_and_its_private_dir(config: Path) -> None:
    set_value(config, "seed", "42")

    assert config.read_text() == "seed = 42\n"
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("gatway_port", "1", "unknown setting 'gatway_port'; did you mean gateway_port"),
        ("gateway_port", "abc", "bad value 'abc' for gateway_port: Input should be a valid integer"),
        ("gateway_port", "70000", "bad value '70000' for gateway_port"),
        ("log_level", "LOUD", "bad value 'LOUD' for log_level"),
        ("sma_fast", "60", "sma_fast (60) must be below sma_slow (50)"),
        ("symbols", "AA PL", "bad value 'AA PL' for symbols"),
        ("tui.keys.quit", "ctrl q", "bad value 'ctrl q' for tui.keys.quit"),
    ],
)
def test_set_refuses_a_bad_key_or_value_and_leaves_the_file(config: Path, key: str, value: str, message: str) -> None:
    config.parent.mkdir()
    config.write_text(CONFIG)

    with pytest.raises(UsageError) as err:
        set_value(config, key, value)

    assert message in str(err.value), str(err.value)
    assert config.read_text() == CONFIG


def test_config_commands_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    env = {**os.environ, "STOCKCTL_CONFIG": str(path), "STOCKCTL_HOME": str(tmp_path / "home")}
    env = {k: v for k, v in env.items() if not k.startswith("STOCKCTL_") or k in ("STOCKCTL_CONFIG", "STOCKCTL_HOME")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stockctl", "config", *args], capture_output=True, text=True, env=env, timeout=60
        )

    assert run("path").stdout == f"{path}\n"
    bad = run("set", "gateway_port", "abc")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert run("set", "nats_url", "nats://ada:s3cret@db:4222").returncode == 0
    shown = json.loads(run("show", "--json").stdout)
    assert shown["nats_url"] == {"value": "nats://ada:***@db:4222", "source": "file"}
    assert shown["gateway_port"] == {"value": 8700, "source": "default"}
    assert shown["home"]["source"] == "env"
    assert "s3cret" not in run("show", "--format", "csv").stdout
