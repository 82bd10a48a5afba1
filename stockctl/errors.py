"""The small exception family the CLI prints as one line on stderr (never a traceback).

Each error names the object it is about and the fix, and carries its exit code.
"""

from __future__ import annotations


class StockctlError(Exception):
    """An error a user can act on: ``str(err)`` is the whole message."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(StockctlError):
    """Bad arguments or input."""

    exit_code = 2


class NotRunningError(StockctlError):
    """No stockctl instance runs in this state dir."""

    exit_code = 3

    def __init__(self, home: str) -> None:
        super().__init__(f"stockctl is not running (state dir {home})", "start it with `stockctl up`")


class PortInUseError(StockctlError):
    """A port stockctl wants to listen on is taken."""

    def __init__(self, port: int, setting: str) -> None:
        flag = "--" + setting.replace("_", "-")
        super().__init__(
            f"port {port} is already in use",
            f"free it, or choose another with {flag} or STOCKCTL_{setting.upper()}",
        )
        self.port, self.setting = port, setting


class MissingBinaryError(StockctlError):
    """A server binary stockctl embeds could not be found."""

    def __init__(self, binary: str, fix: str) -> None:
        super().__init__(f"{binary} not found", fix)


class StartupError(StockctlError):
    """A component did not become ready."""


class ServiceUnavailable(StockctlError):
    """NATS or Redis of the running instance cannot be reached."""


class NotFound(StockctlError):
    """A symbol (or other object) the instance does not know."""
