"""CSV replay: ``timestamp,symbol,price[,volume]`` rows that drive the system with real data.

Timestamps are ISO 8601 (naive means UTC) or epoch seconds / milliseconds / nanoseconds.
A header row is allowed. Every bad row raises :class:`ReplayError` naming file and line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stockctl.errors import UsageError
from stockctl.marketdata.money import PriceError, to_units
from stockctl.wire.symbols import parse_symbol

HEADER = ("timestamp", "symbol", "price", "volume")


class ReplayError(ValueError):
    """A CSV row that cannot be replayed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class ReplayRow:
    line: int
    ts: int  # ns since epoch
    symbol: str
    units: int
    volume: int


MAX_NS = 2**63 - 1
"""Timestamps are int64 nanoseconds on the wire: 1677-09-21 to 2262-04-11."""


def parse_timestamp(text: str) -> int:
    """ISO 8601 or epoch (s, ms, us or ns, told apart by magnitude) -> ns since epoch."""
    ns = _timestamp_ns(text.strip())
    if not -MAX_NS <= ns <= MAX_NS:
        raise ValueError(f"timestamp out of range: {text.strip()[:40]!r} is not between 1677 and 2262")
    return ns


def _timestamp_ns(text: str) -> int:
    if not text:
        raise ValueError("empty timestamp")
    if text.isascii() and text.replace(".", "", 1).isdigit():
        if "." in text:
            whole, frac = text.split(".")
            if not whole:
                raise ValueError(f"bad timestamp {text!r}: use ISO 8601 or epoch seconds")
            return int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, "0"))
        value = int(text)
        for limit, factor in ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3)):
            if value < limit:
                return value * factor
        return value
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad timestamp {text!r}: use ISO 8601 or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def parse_row(fields: list[str], line: int, where: str) -> ReplayRow:
    """Validate one CSV row."""

    def fail(reason: str) -> ReplayError:
        return ReplayError(f"{where}:{line}: {reason}")

    if len(fields) not in (3, 4):
        raise fail(f"expected timestamp,symbol,price[,volume], got {len(fields)} fields")
    try:
        ts = parse_timestamp(fields[0])
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        symbol = parse_symbol(fields[1])
    except UsageError as exc:
        raise fail(exc.message) from None
    try:
        units = to_units(fields[2])
    except PriceError as exc:
        raise fail(str(exc)) from None
    volume = 0
    if len(fields) == 4 and fields[3].strip():
        vol = fields[3].strip()
        if not (vol.isascii() and vol.isdigit()) or len(vol) > 15:
            raise fail(f"bad volume {fields[3]!r}: a whole number of shares")
        volume = int(vol)
    return ReplayRow(line, ts, symbol, units, volume)


def read_rows(path: Path) -> Iterator[ReplayRow]:
    """Rows of a replay CSV in file order; timestamps must not go backwards."""
    where = path.name
    last_ts = None
    with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: tolerate a BOM from spreadsheets
        reader = csv.reader(fh)
        end = 0  # physical line the previous row ended on (a quoted field may span lines)
        while True:
            line = end + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise ReplayError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            except csv.Error as exc:
                raise ReplayError(f"{where}:{line}: {exc}") from None
            end = reader.line_num
            if not fields or all(not f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
                continue
            if line == 1 and fields[0].strip().lower() == "timestamp":
                continue
            row = parse_row(fields, line, where)
            if last_ts is not None and row.ts < last_ts:
                raise ReplayError(f"{where}:{line}: timestamp goes backwards; sort the file by time")
            last_ts = row.ts
            yield row


def validate(path: Path) -> int:
    """Read the whole file once, so a bad row fails at start-up, not mid-replay. Returns row count."""
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    return sum(1 for _ in read_rows(path))
