"""``python -m tui [--demo]``: the trading terminal (``--demo``: a frozen data set, no network).

textual-serve runs this command for ``stockctl tui --web``.
"""

from __future__ import annotations

import sys

from stockctl.settings import load_settings
from tui.app import make_app


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    settings = load_settings()
    if "--demo" in args:
        from tui.demo import demo_data

        make_app(settings, data=demo_data()).run()
    else:
        make_app(settings).run()


if __name__ == "__main__":
    main()
