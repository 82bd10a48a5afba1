"""Tables that fit the terminal: columns are dropped by priority instead of squashed into '…'."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Col:
    """A column: header, alignment, and priority (0 is kept longest)."""

    header: str
    justify: str = "right"
    priority: int = 0


def fitted_table(columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int, title: str | None = None) -> Table:
    """A table of the columns that fit in ``width``; cells are rich markup strings."""
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
