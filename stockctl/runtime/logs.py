"""Structured logs and request ids, the same in every daemon.

Logs go to stderr (the supervisor sends them to ``logs/<name>.log``), as text or, with
``--log-format json``, one JSON object per line. A request id (or any field) bound with
:func:`bind` (the gateway takes ``X-Request-ID`` or makes one, and passes it on to auth and,
in a command header, to matching) is added to every line logged while handling it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
"""HTTP header (and NATS command header) carrying the request id across daemons."""

# --- request ids and bound fields ------------------------------------------------------

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("stockctl_log_context", default=None)


def new_request_id() -> str:
    return secrets.token_hex(8)


def clean_request_id(value: str | None) -> str:
    """A caller's request id if it is short and plain, else a fresh one (it ends up in logs)."""
    if value and len(value) <= 64 and all(c.isalnum() or c in "-_.:" for c in value):
        return value
    return new_request_id()


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (request_id, order_id, user, ...) to every log line in this context."""
    current = _context.get() or {}
    token = _context.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bound(name: str) -> Any:
    """A field bound in the current context, or ``None``."""
    return (_context.get() or {}).get(name)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, daemon, logger, msg, the bound fields, exc."""

    def __init__(self, daemon: str) -> None:
        super().__init__()
        self.daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "daemon": self.daemon,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_context.get() or {})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with bound fields appended as ``key=value``."""

    def __init__(self, daemon: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)-7s {daemon}: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _context.get()
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def configure_logging(name: str, level: str, fmt: str = "text") -> logging.Logger:
    """Logs on stderr (the supervisor sends them to ``logs/<name>.log``), text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(name) if fmt == "json" else TextFormatter(name))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # nats-py logs every reconnect attempt at ERROR; we log state changes ourselves.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    return logging.getLogger(f"stockctl.{name}")
