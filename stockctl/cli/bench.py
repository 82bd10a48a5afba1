"""``stockctl bench ...``: performance measured on this machine, never hoped for."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("ticks")
def ticks() -> None:
    """Publisher -> processor throughput and latency, beside the raw NATS baseline."""
    raise NotImplementedError
