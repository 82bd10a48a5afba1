"""Table: a ``DataTable`` whose auto-width columns fit a cell the moment it is added or changed.

Textual measures new cells later, on the table's next idle, and then asks for a repaint. Under
load that repaint is sometimes lost (seen as 1 run in about 10 of the snapshot pair with the
column widths right and the screen still drawn at the header widths: "251.4" for "251.40"), and
the table stays truncated until something else redraws it. Widening the column before the row
exists means the first paint after ``add_row``/``update_cell`` is already right, and the idle
measurement finds nothing left to change. Every table of the TUI derives from this one.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellType, ColumnKey, RowKey


def cell_width(cell: object) -> int:
    """Terminal cells a value takes in a one-line row (as the table will draw it)."""
    if isinstance(cell, Text):
        return cell.cell_len
    return cell_len(str(cell))


class Table(DataTable[CellType]):
    """A DataTable that widens an auto-width column as soon as a wider cell arrives."""

    def _fit(self, column_key: ColumnKey | str, cell: object) -> None:
        column = self.columns.get(column_key)  # type: ignore[call-overload]  # a StringKey equals its str
        if column is not None and column.auto_width:
            column.content_width = max(column.content_width, cell_width(cell))

    def add_row(
        self,
        *cells: CellType,
        height: int | None = 1,
        key: str | None = None,
        label: Any = None,
    ) -> RowKey:
        for column, cell in zip(self.ordered_columns, cells, strict=False):
            self._fit(column.key, cell)
        return super().add_row(*cells, height=height, key=key, label=label)

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: CellType,
        *,
        update_width: bool = False,
    ) -> None:
        self._fit(column_key, value)
        super().update_cell(row_key, column_key, value, update_width=update_width)
