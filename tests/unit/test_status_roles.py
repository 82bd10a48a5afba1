"""`stockctl status` says which tick partitions the processor holds and how many share them,
and whether the matching daemon leads the markets or stands by."""

from __future__ import annotations

from stockctl.cli.system import partitions_line, role_line, status_table


def test_the_line_names_the_partitions_held_and_the_processors_sharing_them() -> None:
    assert partitions_line({"partitions": [0, 2, 5], "partitions_total": 8, "processors": 2}) == (
        "holds 0,2,5 of 8; 2 processors share them"
    )
    assert partitions_line({"partitions": [], "partitions_total": 8, "processors": 1}) == (
        "holds none of 8; the only processor"
    )


def test_the_processor_row_is_followed_by_its_partitions_line() -> None:
    row = {
        "name": "processor",
        "pid": 42,
        "state": "running",
        "uptime_s": 3.0,
        "restarts": 0,
        "address": None,
        "partitions": {"partitions": list(range(8)), "partitions_total": 8, "processors": 1},
    }
    rows = status_table([row])
    assert [r[0] for r in rows] == ["processor", "  partitions"]
    assert rows[1][2] == "8 of 8"  # the state column, which a narrow terminal still shows
    assert rows[1][-1] == "holds 0,1,2,3,4,5,6,7 of 8; the only processor"


def test_the_matching_row_is_followed_by_its_role() -> None:
    row = {"name": "matching", "pid": 7, "state": "running", "uptime_s": 3.0, "restarts": 0, "address": None}
    active = status_table([{**row, "role": {"role": "active", "term": 12}}])
    assert [r[0] for r in active] == ["matching", "  role"]
    assert active[1][2] == "active"
    assert active[1][-1] == "leads the markets (term 12)"
    standby = status_table([{**row, "role": {"role": "standby", "term": None}}])
    assert standby[1][2] == "standby" and "takes over" in standby[1][-1]
    assert role_line({"role": "lapsed"}).startswith("its lease lapsed")
