"""``stockctl export SYMBOL --from ... [--to ...] --format csv|parquet [-o FILE]``: ticks out of the
history store.

It reads the store directly and read-only (the state dir's SQLite file, or
``STOCKCTL_HISTORY_URL``), page by page, so a million ticks stream out in constant memory and
without a gateway round trip per page. Whoever can read the state dir can read that file
anyway, so no login is asked for. Prices and a live feed's quantities (``qty``, empty for a tick
without one) stay exact: decimal strings in CSV, ``decimal128(26, 8)`` in Parquet (which needs
pyarrow: ``pip install 'stockctl[parquet]'``).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from stockctl.cli.common import err_console, get_settings
from stockctl.cli.complete import complete_symbols
from stockctl.errors import NotFound, UsageError

if TYPE_CHECKING:
    from stockctl.history import HistoryStore, TickRow

app = typer.Typer()

PAGE = 10_000
COLUMNS = ("symbol", "seq", "ts", "ts_ns", "price", "volume", "qty")


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


def iso_utc(ts_ns: int) -> str:
    whole, frac = divmod(ts_ns, 1_000_000_000)
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def pages(store: HistoryStore, symbol: str, start: int | None, end: int | None) -> Iterator[list[TickRow]]:
    """The range's ticks, a page at a time, oldest first."""
    after: tuple[int, int] | None = None
    while True:
        page = store.ticks(symbol, start=start, end=end, after=after, limit=PAGE)
        if page:
            yield page
        if len(page) < PAGE:
            return
        after = (page[-1].ts, page[-1].seq)


def write_csv(out: IO[str], batches: Iterable[list[TickRow]]) -> int:
    from stockctl.marketdata.money import from_units, qty_text

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for page in batches:
        writer.writerows(
            (r.symbol, r.seq, iso_utc(r.ts), r.ts, from_units(r.price), r.volume, qty_text(r.qty) or "") for r in page
        )
        n += len(page)
    return n


def write_parquet(path: Path, batches: Iterable[list[TickRow]]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("--format parquet needs pyarrow", "pip install 'stockctl[parquet]'") from None
    schema = pa.schema(
        [
            ("symbol", pa.string()),
            ("seq", pa.int64()),
            ("ts", pa.timestamp("ns", tz="UTC")),
            ("price", pa.decimal128(26, 8)),
            ("volume", pa.int64()),
            ("qty", pa.decimal128(26, 8)),
        ]
    )
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        for page in batches:
            rows = page
            table = pa.table(
                {
                    "symbol": [r.symbol for r in rows],
                    "seq": [r.seq for r in rows],
                    "ts": pa.array([r.ts for r in rows], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
                    "price": [Decimal(r.price).scaleb(-8) for r in rows],
                    "volume": [r.volume for r in rows],
                    "qty": [Decimal(r.qty).scaleb(-8) if r.qty else None for r in rows],
                },
                schema=schema,
            )
            writer.write_table(table)
            n += len(rows)
    return n


@app.command()
def export(
    symbol: Annotated[str, typer.Argument(help="Symbol (TAB completes).", autocompletion=complete_symbols)],
    start: Annotated[
        str | None, typer.Option("--from", help="Start: ISO 8601 (naive is UTC) or epoch s/ms/ns.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (exclusive), like --from; default now.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Instead of --from: 90s, 2h, 30d ago.")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or parquet.")] = ExportFormat.csv,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (csv: default stdout).")] = None,
) -> None:
    """Every stored tick of a symbol in a range, from the history store, as CSV or Parquet."""
    from stockctl.history import open_store
    from stockctl.history.reads import time_range
    from stockctl.wire.symbols import parse_symbol as normalise_symbol

    sym = normalise_symbol(symbol)
    lo, hi = time_range(since, start, end)
    if fmt is ExportFormat.parquet and output is None:
        raise UsageError("--format parquet writes a file", "give one with -o FILE")
    store = open_store(get_settings(), read_only=True)
    try:
        if sym not in store.symbols():
            raise NotFound(f"no history of {sym}", f"stored symbols: {', '.join(store.symbols()) or 'none yet'}")
        batches = pages(store, sym, lo, hi)
        if fmt is ExportFormat.parquet:
            n = write_parquet(output, batches)  # type: ignore[arg-type]
        elif output is None:
            n = write_csv(sys.stdout, batches)
        else:
            with output.open("w", newline="") as fh:
                n = write_csv(fh, batches)
    finally:
        store.close()
    if output is not None:
        err_console.print(f"wrote {n:,} ticks of {sym} to {output}")
