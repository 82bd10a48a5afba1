"""Balances per asset: available and reserved, updated in place."""

from __future__ import annotations

from tui.widgets.table import Table


class BalancesTable(Table):
    """Available and reserved amounts per asset."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.border_title = "Balances"

    def on_mount(self) -> None:
        for col in ("asset", "available", "reserved"):
            self.add_column(col, key=col)

    def set_balances(self, balances: dict[str, dict[str, str]]) -> None:
        """Update each asset's row in place (new assets are added)."""
        for asset, amounts in sorted(balances.items()):
            available, reserved = str(amounts.get("available", "")), str(amounts.get("reserved", ""))
            if asset in self.rows:
                self.update_cell(asset, "available", available)
                self.update_cell(asset, "reserved", reserved)
            else:
                self.add_row(asset, available, reserved, key=asset)
