"""stockctl.replay: timestamp parsing and CSV rows, with errors that name file and line."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from stockctl.marketdata.replay import ReplayError, ReplayRow, parse_timestamp, read_rows, validate
from tests.support.arithmetic import units_of

NS = 1_000_000_000
EPOCH_S = 1_700_000_000  # 2023-11-14T22:13:20Z
GOOD = f"{EPOCH_S},AAPL,189.25,100"


def utc_ns(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s)) * NS + us * 1000


def write_csv(tmp_path: Path, *lines: str, name: str = "ticks.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows_of(path: Path) -> list[ReplayRow]:
    return list(read_rows(path))


def error_of(path: Path) -> str:
    with pytest.raises(ReplayError) as err:
        rows_of(path)
    return str(err.value)


# --- parse_timestamp ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-05T14:30:00Z", utc_ns(2024, 3, 5, 14, 30)),
        ("2024-03-05T14:30:00+00:00", utc_ns(2024, 3, 5, 14, 30)),
        ("2024-03-05T14:30:00", utc_ns(2024, 3, 5, 14, 30)),  # naive means UTC
        ("2024-03-05 14:30:00", utc_ns(2024, 3, 5, 14, 30)),
        ("2024-03-05T16:30:00+02:00", utc_ns(2024, 3, 5, 14, 30)),
        ("2024-03-05T09:30:00-05:00", utc_ns(2024, 3, 5, 14, 30)),
        ("2024-03-05T14:30:00.123456Z", utc_ns(2024, 3, 5, 14, 30, 0, 123456)),
        ("2024-03-05", utc_ns(2024, 3, 5)),
        ("1969-12-31T23:59:59Z", -NS),
        ("  2024-03-05T14:30:00Z  ", utc_ns(2024, 3, 5, 14, 30)),
    ],
)
def test_parse_timestamp_iso(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (str(EPOCH_S), EPOCH_S * NS),  # seconds
        (str(EPOCH_S * 1000 + 123), EPOCH_S * NS + 123_000_000),  # milliseconds
        (str(EPOCH_S * 10**6 + 123_456), EPOCH_S * NS + 123_456_000),  # microseconds
        (str(EPOCH_S * NS + 123_456_789), EPOCH_S * NS + 123_456_789),  # nanoseconds
        ("0", 0),
        ("86400", 86_400 * NS),
        (f"{EPOCH_S}.5", EPOCH_S * NS + NS // 2),
        (f"{EPOCH_S}.123456789", EPOCH_S * NS + 123_456_789),
        (f"{EPOCH_S}.1234567899", EPOCH_S * NS + 123_456_789),  # beyond ns is dropped
    ],
)
def test_parse_timestamp_epoch(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


def test_parse_timestamp_epoch_units_agree_on_the_same_instant() -> None:
    forms = [str(EPOCH_S), str(EPOCH_S * 1000), str(EPOCH_S * 10**6), str(EPOCH_S * NS), "2023-11-14T22:13:20Z"]

    assert {parse_timestamp(f) for f in forms} == {EPOCH_S * NS}


@pytest.mark.parametrize(
    "text", ["", "   ", "yesterday", "2024-13-01", "2024-03-05T25:00:00", "1e9", "-5", "1.2.3", "0x10"]
)
def test_parse_timestamp_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


# --- read_rows: good files ----------------------------------------------------------------


def test_read_rows_with_header_comments_blanks_and_optional_volume(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "timestamp,symbol,price,volume",  # 1
        "# a comment",  # 2
        "",  # 3
        f"{EPOCH_S},AAPL,189.25,100",  # 4
        f"{EPOCH_S + 1},msft, 415.2 ",  # 5: no volume, lower-case symbol, spaces
        "   # an indented comment",  # 6
        " , ,",  # 7: blank fields only
        f"{EPOCH_S + 1},TSLA,245.80,",  # 8: empty volume
        "2023-11-14T22:13:22Z, AAPL ,0.00000001, 7 ",  # 9
    )

    rows = rows_of(path)

    assert rows == [
        ReplayRow(4, EPOCH_S * NS, "AAPL", units_of("189.25"), 100),
        ReplayRow(5, (EPOCH_S + 1) * NS, "MSFT", units_of("415.2"), 0),
        ReplayRow(8, (EPOCH_S + 1) * NS, "TSLA", units_of("245.80"), 0),
        ReplayRow(9, (EPOCH_S + 2) * NS, "AAPL", 1, 7),
    ]


def test_read_rows_without_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD, f"{EPOCH_S},GOOGL,172.30")

    rows = rows_of(path)

    assert [(r.line, r.symbol) for r in rows] == [(1, "AAPL"), (2, "GOOGL")]


def test_read_rows_header_is_case_insensitive(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Timestamp,Symbol,Price", GOOD)

    assert [r.line for r in rows_of(path)] == [2]


def test_read_rows_allows_equal_timestamps(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD, GOOD, GOOD)

    assert len(rows_of(path)) == 3


def test_read_rows_handles_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "dos.csv"
    path.write_bytes(f"timestamp,symbol,price\r\n{GOOD}\r\n\r\n{GOOD}\r\n".encode())

    assert [r.line for r in rows_of(path)] == [2, 4]


def test_validate_counts_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "timestamp,symbol,price", GOOD, "# c", GOOD)

    assert validate(path) == 2


def test_empty_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")

    assert validate(path) == 0


# --- read_rows: every bad row names file and line -----------------------------------------

BAD_ROWS = {
    "bad ISO timestamp": "2024-99-01T00:00:00Z,AAPL,1.00",
    "text timestamp": "noon,AAPL,1.00",
    "empty timestamp": ",AAPL,1.00",
    "symbol with two dots in a row": f"{EPOCH_S},AA..PL,1.00",
    "symbol starting with a separator": f"{EPOCH_S},.AAPL,1.00",
    "symbol with a Cyrillic look-alike": f"{EPOCH_S},\u0410APL,1.00",
    "empty symbol": f"{EPOCH_S},,1.00",
    "symbol too long": f"{EPOCH_S},{'A' * 33},1.00",
    "symbol with a wildcard": f"{EPOCH_S},AAPL*,1.00",
    "NaN price": f"{EPOCH_S},AAPL,NaN",
    "Infinity price": f"{EPOCH_S},AAPL,Infinity",
    "negative price": f"{EPOCH_S},AAPL,-1.00",
    "zero price": f"{EPOCH_S},AAPL,0.00",
    "too many decimals": f"{EPOCH_S},AAPL,1.123456789",
    "text price": f"{EPOCH_S},AAPL,cheap",
    "exponent price": f"{EPOCH_S},AAPL,1e2",
    "empty price": f"{EPOCH_S},AAPL,",
    "negative volume": f"{EPOCH_S},AAPL,1.00,-5",
    "fractional volume": f"{EPOCH_S},AAPL,1.00,1.5",
    "text volume": f"{EPOCH_S},AAPL,1.00,lots",
    "absurd volume": f"{EPOCH_S},AAPL,1.00,{'9' * 16}",
    "superscript volume": f"{EPOCH_S},AAPL,1.00,\u00b2",
    "non-ASCII digit volume": f"{EPOCH_S},AAPL,1.00,\u0661\u0662",
    "two fields": f"{EPOCH_S},AAPL",
    "one field": f"{EPOCH_S}",
    "five fields": f"{EPOCH_S},AAPL,1.00,5,extra",
}


@pytest.mark.parametrize("bad", list(BAD_ROWS.values()), ids=list(BAD_ROWS))
@pytest.mark.parametrize("with_header", [True, False], ids=["header", "no-header"])
def test_bad_row_raises_with_file_and_line(tmp_path: Path, bad: str, with_header: bool) -> None:
    lines = (["timestamp,symbol,price,volume"] if with_header else []) + [GOOD, "# comment", "", bad, GOOD]
    bad_line = lines.index(bad) + 1
    path = write_csv(tmp_path, *lines, name="prices-2024.csv")

    message = error_of(path)

    assert message.startswith(f"prices-2024.csv:{bad_line}: ")


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("noon,AAPL,1.00", "timestamp"),
        (f"{EPOCH_S},AA..PL,1.00", "symbol"),
        (f"{EPOCH_S},AAPL,1.123456789", "decimals"),
        (f"{EPOCH_S},AAPL,1.00,lots", "volume"),
        (f"{EPOCH_S},AAPL", "2 fields"),
    ],
)
def test_bad_row_message_says_what_is_wrong(tmp_path: Path, bad: str, needle: str) -> None:
    path = write_csv(tmp_path, bad)

    assert needle in error_of(path)


def test_timestamps_going_backwards_names_the_offending_line(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "timestamp,symbol,price",  # 1
        f"{EPOCH_S},AAPL,1.00",  # 2
        f"{EPOCH_S + 5},MSFT,1.00",  # 3
        "",  # 4
        f"{EPOCH_S + 4},AAPL,1.00",  # 5: earlier than line 3
    )

    message = error_of(path)

    assert message.startswith("ticks.csv:5: ")
    assert "backwards" in message


def test_backwards_check_compares_instants_not_text(tmp_path: Path) -> None:
    # Same instant in ms then in ISO with an offset: not backwards.
    path = write_csv(tmp_path, f"{EPOCH_S * 1000},AAPL,1.00", "2023-11-15T00:13:20+02:00,AAPL,1.00")

    assert [r.ts for r in rows_of(path)] == [EPOCH_S * NS, EPOCH_S * NS]


def test_rows_before_a_bad_row_are_yielded(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD, GOOD, "oops,AAPL,1.00")
    rows = read_rows(path)

    first, second = next(rows), next(rows)

    assert (first.line, second.line) == (1, 2)
    with pytest.raises(ReplayError, match=r"ticks\.csv:3: "):
        next(rows)


def test_header_is_only_allowed_on_the_first_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD, "timestamp,symbol,price")

    assert error_of(path).startswith("ticks.csv:2: ")


def test_validate_reports_the_first_bad_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD, f"{EPOCH_S},AAPL,-3", f"{EPOCH_S},AAPL,NaN")

    with pytest.raises(ReplayError, match=r"^ticks\.csv:2: "):
        validate(path)


def test_validate_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"

    with pytest.raises(ReplayError) as err:
        validate(missing)

    assert str(missing) in str(err.value)
    assert "no such file" in str(err.value)


def test_validate_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no such file"):
        validate(tmp_path)
