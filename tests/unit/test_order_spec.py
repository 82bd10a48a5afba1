"""Parsing of `stockctl order` specs: shape only; the exchange checks tick and lot sizes."""

from __future__ import annotations

import pytest

from stockctl.cli.exchange import parse_order_spec
from stockctl.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10@100.5", ("10", "100.5")), ("10", ("10", None)), (" 3@250 ", ("3", "250")), ("0.5@1.25", ("0.5", "1.25"))],
)
def test_good_specs(text: str, expected: tuple[str, str | None]) -> None:
    assert parse_order_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ten", "bad quantity"),
        ("0", "bad quantity"),
        ("-5", "bad quantity"),
        ("NaN", "bad quantity"),
        ("1e3", "bad quantity"),
        ("10@", "bad price"),
        ("10@abc", "bad price"),
        ("10@0", "bad price"),
        ("10@Infinity", "bad price"),
        ("10@-1", "bad price"),
        ("１０", "bad quantity"),
        ("10@1@2", "bad price"),
    ],
)
def test_bad_specs_name_the_part_that_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_order_spec(text)
