"""``python -m tui [--demo]``: the trading terminal (``--demo``: a frozen data set, no network).

textual-serve runs this command for ``stockctl tui --web``.
"""

from __future__ import annotations

import sys

from stockctl.errors import StockctlError
from stockctl.settings import load_settings
from tui.app import make_app


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings()
        if "--demo" in args:
            from tui.demo import demo_data

            app = make_app(settings, data=demo_data())
        else:
            app = make_app(settings)
    except StockctlError as exc:  # a bad [tui] theme or key: one line, as from the CLI
        sys.exit(f"error: {exc}")
    app.run()


if __name__ == "__main__":
    main()
