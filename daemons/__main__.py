"""``python -m daemons NAME[-N]``: run one daemon in the foreground (the supervisor does this)."""

import re
import sys

from stockctl.runtime.process import defer_optional_imports

defer_optional_imports()  # before any daemon imports nats: its aiohttp is for ws:// URLs only

from daemons import NAMES, load  # noqa: E402
from stockctl.runtime.daemon import main  # noqa: E402

# NAME, or NAME-N for the Nth of several in one home (``up --cluster``): its own status file,
# log and lease member id.
name = sys.argv[1] if len(sys.argv) == 2 else ""
daemon = re.sub(r"-\d+", "", name, count=1) if re.fullmatch(r"[a-z]+-\d+", name) else name
if daemon not in NAMES:
    print(f"usage: python -m daemons {{{','.join(NAMES)}}}[-N]", file=sys.stderr)
    sys.exit(2)
main(name, load(daemon))
