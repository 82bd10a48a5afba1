"""``python -m daemons NAME``: run one daemon in the foreground (the supervisor does this)."""

import sys

from stockctl.runtime.process import defer_optional_imports

defer_optional_imports()  # before any daemon imports nats: its aiohttp is for ws:// URLs only

from daemons import NAMES, load  # noqa: E402
from stockctl.runtime.daemon import main  # noqa: E402

if len(sys.argv) != 2 or sys.argv[1] not in NAMES:
    print(f"usage: python -m daemons {{{','.join(NAMES)}}}", file=sys.stderr)
    sys.exit(2)
main(sys.argv[1], load(sys.argv[1]))
