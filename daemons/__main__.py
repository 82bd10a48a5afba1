"""``python -m daemons NAME``: run one daemon in the foreground (the supervisor does this)."""

import sys

from daemons import NAMES, load
from stockctl.runtime.daemon import main

if len(sys.argv) != 2 or sys.argv[1] not in NAMES:
    print(f"usage: python -m daemons {{{','.join(NAMES)}}}", file=sys.stderr)
    sys.exit(2)
main(sys.argv[1], load(sys.argv[1]))
