"""A table of rows keyed by name, drawn line by line, that repaints only the rows that changed.

Textual's ``DataTable`` forgets every rendered cell on each ``update_cell`` (its caches are keyed
by a table-wide update count) and repaints the whole widget, so a board of quotes updated 20
times a second was re-rendered cell by cell on every frame (``stockctl bench tui`` profiled it at
about half of the event loop's time). :class:`QuoteTable` keeps one rendered line (a ``Strip``)
per row, keyed by that row's version, its cursor state and the widget's width, focus and theme,
and refreshes only the screen lines of rows whose cells changed. It is a focusable line-API
widget: a header line, a row cursor moved with the arrow keys or the mouse, and a
:class:`QuoteTable.RowHighlighted` message when the cursor moves to another row.

Contract: cells are ``str`` or ``rich.text.Text``; a column widens (never narrows) to fit what it
is given; the cursor stays on its row's key when rows are reordered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = Text | str
PAD = 1
"""Blank columns either side of a cell (as DataTable's default cell padding)."""


class QuoteTable(ScrollView, can_focus=True):
    """Rows of cells under a header; a row cursor; repaints changed rows only."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "cursor_first", "First", show=False),
        Binding("end", "cursor_last", "Last", show=False),
    ]

    COMPONENT_CLASSES = {"quote-table--header", "quote-table--cursor"}

    DEFAULT_CSS = """
    QuoteTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .quote-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .quote-table--header { background-tint: $foreground 5%; }
        }
        & > .quote-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .quote-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .quote-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowHighlighted(Message):
        """The cursor moved to the row ``key``."""

        def __init__(self, table: QuoteTable, key: str) -> None:
            super().__init__()
            self.table, self.key = table, key

        @property
        def control(self) -> QuoteTable:
            return self.table

    def __init__(self, columns: Sequence[tuple[str, str]], id: str | None = None) -> None:
        """``columns`` are (key, label) pairs, left to right."""
        super().__init__(id=id)
        self._base: tuple[tuple[str, bool], Style] | None = None
        self.column_keys = [k for k, _ in columns]
        self._col_index = {k: i for i, k in enumerate(self.column_keys)}
        self.labels = [label for _, label in columns]
        self.widths = [len(label) for label in self.labels]
        self.rows: dict[str, list[Cell]] = {}
        """Each row's cells by key (``key in table.rows`` says whether it is shown)."""
        self.order: list[str] = []
        self._line_of: dict[str, int] = {}
        self._version: dict[str, int] = {}
        self._strips: dict[str, tuple[tuple[object, ...], Strip]] = {}
        self._header: tuple[tuple[object, ...], Strip] | None = None
        self.cursor_key: str | None = None
        self.repaints = 0
        """Rows rendered afresh (not from the cache), for tests and the bench."""

    # --- data ---------------------------------------------------------------------------

    def get_cell(self, key: str, column: str) -> Cell:
        return self.rows[key][self._col_index[column]]

    def add_row(self, cells: Sequence[Cell], key: str) -> None:
        """A new row at the end (then :meth:`set_order` to place it)."""
        self.rows[key] = list(cells)
        self._version[key] = 0
        self._fit(self.rows[key])
        self.order.append(key)
        self._reordered()

    def remove_row(self, key: str) -> None:
        self.rows.pop(key, None)
        self._version.pop(key, None)
        self._strips.pop(key, None)
        if key in self._line_of:
            self.order.remove(key)
            self._reordered()

    def update_cell(self, key: str, column: str, value: Cell) -> None:
        """Set one cell; the row's line is repainted on the next frame if the cell changed."""
        cells = self.rows[key]
        i = self._col_index[column]
        if _same(cells[i], value):
            return
        cells[i] = value
        self._changed(key, i, value)

    def update_row(self, key: str, cells: Sequence[Cell]) -> None:
        """Set a whole row; repainted once if any cell changed."""
        row = self.rows[key]
        changed = False
        for i, value in enumerate(cells):
            if not _same(row[i], value):
                row[i] = value
                changed = True
                self._fit_one(i, value)
        if changed:
            self._touch(key)

    def set_order(self, keys: Iterable[str]) -> None:
        """Show the rows in this order (each key once, all of :attr:`rows`)."""
        order = list(keys)
        if order != self.order:
            self.order = order
            self._reordered()

    def _changed(self, key: str, i: int, value: Cell) -> None:
        self._fit_one(i, value)
        self._touch(key)

    def _touch(self, key: str) -> None:
        self._version[key] += 1
        line = self._line_of.get(key)
        if line is not None:
            y = line + 1 - self.scroll_offset.y  # + the header
            if 0 < y < self.size.height:
                self.refresh(Region(0, y, self.size.width, 1))

    def _fit(self, cells: Sequence[Cell]) -> None:
        for i, value in enumerate(cells):
            self._fit_one(i, value)

    def _fit_one(self, i: int, value: Cell) -> None:
        n = value.cell_len if isinstance(value, Text) else Text(value).cell_len
        if n > self.widths[i]:
            self.widths[i] = n
            self._strips.clear()
            self._header = None
            self._resized()

    def _reordered(self) -> None:
        self._line_of = {k: i for i, k in enumerate(self.order)}
        if self.cursor_key not in self._line_of:
            self.cursor_key = None
            if self.order:
                self._move_to(0)
        self._resized()

    def _resized(self) -> None:
        self.virtual_size = Size(sum(self.widths) + 2 * PAD * len(self.widths), len(self.order) + 1)
        self.refresh()

    # --- the cursor ---------------------------------------------------------------------

    @property
    def cursor_row(self) -> int:
        return self._line_of.get(self.cursor_key, 0) if self.cursor_key else 0

    def move_cursor(self, row: int) -> None:
        """Put the cursor on the ``row``-th shown row (clamped)."""
        if self.order:
            self._move_to(max(0, min(len(self.order) - 1, row)))

    def _move_to(self, row: int) -> None:
        key = self.order[row]
        if key == self.cursor_key:
            return
        old, self.cursor_key = self.cursor_key, key
        for k in (old, key):
            if k in self._version:
                self._touch(k)
        self._scroll_to_cursor()
        self.post_message(self.RowHighlighted(self, key))

    def _scroll_to_cursor(self) -> None:
        row = self.cursor_row
        body = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + body:
            self.scroll_to(y=row - body + 1, animate=False)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor_row - max(1, self.size.height - 1))

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor_row + max(1, self.size.height - 1))

    def action_cursor_first(self) -> None:
        self.move_cursor(0)

    def action_cursor_last(self) -> None:
        self.move_cursor(len(self.order) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(event.y - 1 + self.scroll_offset.y)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        self._scroll_to_cursor()

    # --- drawing ------------------------------------------------------------------------

    def base_style(self) -> Style:
        """The widget's own rich style, worked out once per theme and focus (``rich_style`` walks
        every ancestor each time, and a frame asks for it once per line)."""
        key = (self.app.theme, self.has_focus)
        if self._base is None or self._base[0] != key:
            self._base = (key, self.rich_style)
        return self._base[1]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None

    def render_line(self, y: int) -> Strip:
        if y == 0:
            return self._header_strip()
        row = y - 1 + self.scroll_offset.y
        if row >= len(self.order):
            return Strip.blank(self.size.width, self.base_style())
        return self._row_strip(self.order[row])

    def _look(self) -> tuple[object, ...]:
        return (self.has_focus, self.app.theme, tuple(self.widths), self.size.width, self.scroll_offset.x)

    def _fit_width(self, strip: Strip, fill: Style) -> Strip:
        """The visible part of a line, filled to the widget's width (the cursor and the header
        span the whole width, as in a DataTable)."""
        x, width = self.scroll_offset.x, self.size.width
        return strip.crop(x, x + width).extend_cell_length(width, fill)

    def _header_strip(self) -> Strip:
        key = self._look()
        if self._header is None or self._header[0] != key:
            style = self.get_component_rich_style("quote-table--header")
            line = self._line([Text(label) for label in self.labels], style, None)
            self._header = (key, self._fit_width(line, style))
        return self._header[1]

    def _row_strip(self, row_key: str) -> Strip:
        """The row's line at the widget's width: from the cache unless the row or the look changed."""
        cursor = row_key == self.cursor_key
        key = (self._version[row_key], cursor, *self._look())
        cached = self._strips.get(row_key)
        if cached is not None and cached[0] == key:
            return cached[1]
        self.repaints += 1
        base = self.base_style()
        over = self.get_component_rich_style("quote-table--cursor") if cursor else None
        line = self._line(self.rows[row_key], base, over)
        strip = self._fit_width(line, base + over if over else base)
        self._strips[row_key] = (key, strip)
        return strip

    def _line(self, cells: Sequence[Cell], base: Style, over: Style | None) -> Strip:
        """One line: each cell padded to its column, on ``base``, with ``over`` (the cursor) on top."""
        console = self.app.console
        segments: list[Segment] = []
        pad = Segment(" " * PAD)
        for value, width in zip(cells, self.widths, strict=True):
            text = value if isinstance(value, Text) else Text(value)
            segments.append(pad)
            # Text.render draws the spans only: the text's own style goes under them here.
            inner = Segment.apply_style(text.render(console), _style(text.style))
            segments.extend(Segment.adjust_line_length(list(inner), width))
            segments.append(pad)
        return Strip(Segment.simplify(Segment.apply_style(segments, base, over)))


def _same(a: Cell, b: Cell) -> bool:
    """Whether two cells look the same (``Text ==`` ignores the text's own style)."""
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return type(a) is type(b) and a == b


_styles: dict[str, Style] = {}


def _style(style: str | Style) -> Style:
    if isinstance(style, Style):
        return style
    found = _styles.get(style)
    if found is None:
        found = _styles[style] = Style.parse(style) if style else Style()
    return found
