"""Table output of every command in one place: a rich table that fits the terminal, JSON, or CSV.

A table command builds one :class:`Report` (JSON document, CSV header and rows, rich rows)
and hands it to :func:`emit` with the ``--format`` the user chose (``--json`` is
``--format json``). Rich tables drop columns by priority instead of squashing them into
``…``. CSV is the stdlib writer with a header row; cells are written as given, so prices
stay the exact decimal strings the server sent (never floats). rich is imported only when
a table is drawn: start-up time counts (see ``stockctl.cli.common``).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stockctl.errors import UsageError

if TYPE_CHECKING:
    from rich.table import Table


class Format(StrEnum):
    """What a table command prints."""

    table = "table"
    json = "json"
    csv = "csv"


FormatOpt = Annotated[
    Format | None,
    typer.Option("--format", help="table, json or csv (a header row, exact decimals).", show_default="table"),
]


@dataclass(frozen=True)
class Col:
    """A column: header, alignment, and priority (0 is kept longest)."""

    header: str
    justify: str = "right"
    priority: int = 0


@dataclass
class Report:
    """One command's output in every format: ``json`` is the document ``--json`` prints,
    ``header``/``csv_rows`` the CSV (plain values), ``rows`` the rich table's markup cells."""

    json: Any
    header: Sequence[str]
    csv_rows: Iterable[Sequence[Any]]
    columns: Sequence[Col] = ()
    rows: Sequence[Sequence[str]] = ()
    title: str | None = None
    empty: str | None = None
    """Printed instead of an empty table (a hint of what to do); None draws the empty table."""
    after: Callable[[], None] | None = field(default=None)
    """Called after the table (a 'more:' line): table output only, never in JSON or CSV."""
    draw: Callable[[], None] | None = None
    """Prints the table output itself, instead of a fitted table (the book's ladder, doctor's list)."""


def pick_format(fmt: Format | None, json_out: bool) -> Format:
    """The format asked for: ``--json`` means ``--format json``; the two cannot disagree."""
    if json_out and fmt not in (None, Format.json):
        raise UsageError(f"--json and --format {fmt} disagree", "give one of them")
    if json_out:
        return Format.json
    return fmt or Format.table


def csv_cell(value: Any) -> str:
    """A CSV cell: None is empty, booleans are true/false, the rest as str() (decimal strings as sent)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # never for money: the server sends decimal strings
        return repr(value)
    return str(value)


def records(docs: Iterable[dict[str, Any]], fields: Sequence[str]) -> Iterable[list[Any]]:
    """CSV rows of JSON objects: the value of each field as the server sent it (absent: empty)."""
    return ([d.get(f) for f in fields] for d in docs)


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """The header row and the rows on stdout, through the stdlib csv writer."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    sys.stdout.flush()


def emit(report: Report, fmt: Format | None, json_out: bool = False) -> None:
    """Print ``report`` as the user asked: the one place that decides table, JSON or CSV."""
    from stockctl.cli.common import console, print_json

    chosen = pick_format(fmt, json_out)
    if chosen is Format.json:
        print_json(report.json)
        return
    if chosen is Format.csv:
        write_csv(report.header, report.csv_rows)
        return
    if report.draw is not None:
        report.draw()
        return
    if not report.rows and report.empty is not None:
        console.print(report.empty)
        return
    console.print(fitted_table(report.columns, report.rows, console.width, report.title))
    if report.after is not None:
        report.after()


def fitted_table(columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int, title: str | None = None) -> Table:
    """A table of the columns that fit in ``width``; cells are rich markup strings."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    widths = [Text(c.header).cell_len for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], Text.from_markup(cell).cell_len)
    keep = list(range(len(columns)))
    # Each column costs its width plus two cells of padding and a separator.
    while len(keep) > 1 and sum(widths[i] + 3 for i in keep) + 1 > width:
        drop = max(keep, key=lambda i: (columns[i].priority, i))
        if columns[drop].priority == 0:
            break
        keep.remove(drop)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", title=title, title_justify="left", pad_edge=False)
    for i in keep:
        table.add_column(columns[i].header, justify=columns[i].justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table
