"""The Textual app. Until the TUI issue lands it shows a live price board from Redis."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header

from stockctl.client import GatewayClient
from stockctl.errors import StockctlError
from stockctl.settings import Settings


class StockApp(App[None]):
    """Live board of the latest prices (placeholder for the full trading terminal)."""

    TITLE = "stockctl"
    BINDINGS = [("q", "quit", "Quit")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True)
        yield DataTable(id="board", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col in ("symbol", "last", "change", "change %", "high", "low"):
            table.add_column(col, key=col)
        self.set_interval(1.0, self.refresh_board)
        self.refresh_board()

    def refresh_board(self) -> None:
        table = self.query_one(DataTable)
        try:
            with GatewayClient(self.settings) as client:
                quotes = client.quotes()
        except StockctlError as exc:
            self.sub_title = str(exc)
            return
        self.sub_title = ""
        for q in quotes:
            cells = (q.symbol, q.price, q.change, q.change_pct, q.high, q.low)
            if q.symbol in table.rows:
                for col, value in zip(("last", "change", "change %", "high", "low"), cells[1:], strict=True):
                    table.update_cell(q.symbol, col, value)
            else:
                table.add_row(*cells, key=q.symbol)


def make_app(settings: Settings) -> StockApp:
    """The app, for the CLI and for tests."""
    return StockApp(settings)
