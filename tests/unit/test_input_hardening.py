"""Hostile-but-plausible input to the pure parsers: unicode digits, BOMs, bad encodings, negative zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockctl.marketdata.candles import parse_interval
from stockctl.marketdata.money import PriceError, pct_change_str, to_units
from stockctl.marketdata.replay import ReplayError, read_rows


@pytest.mark.parametrize("text", ["１００", "١٢٣.٥", "1٠.5"])
def test_prices_with_non_ascii_digits_are_rejected(text: str) -> None:
    with pytest.raises(PriceError):
        to_units(text)


@pytest.mark.parametrize("text", ["٥m", "１s"])
def test_intervals_with_non_ascii_digits_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="bad candle interval"):
        parse_interval(text)


def test_a_tiny_fall_is_zero_percent_not_minus_zero() -> None:
    assert pct_change_str(100_000 * 10**8, 100_000 * 10**8 - 1) == "0.00"


def test_a_csv_with_a_byte_order_mark_and_header_replays(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftimestamp,symbol,price\n2024-01-02T10:00:00Z,IBM,10.5\n".encode())

    rows = list(read_rows(path))

    assert [(r.line, r.symbol, r.units) for r in rows] == [(2, "IBM", 1_050_000_000)]


def test_a_csv_that_is_not_utf8_is_a_replay_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("2024-01-02T10:00:00Z,IBM,10.5\n2024-01-02T10:00:01Z,CAF\xc9,10.5\n".encode("latin-1"))

    with pytest.raises(ReplayError, match=r"latin1\.csv: not UTF-8"):
        list(read_rows(path))


def test_epoch_timestamps_with_non_ascii_digits_are_a_replay_error(tmp_path: Path) -> None:
    path = tmp_path / "digits.csv"
    path.write_text("１７００００００００,IBM,10.5\n", encoding="utf-8")

    with pytest.raises(ReplayError, match=r"digits\.csv:1"):
        list(read_rows(path))
