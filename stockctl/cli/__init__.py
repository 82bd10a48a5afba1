"""The ``stockctl`` command line: one module per command group, joined here.

Every call imports these modules to build the command tree, so they import only typer and
the standard library at module level (``stockctl.cli.common`` says why); ``--version``
reads the installed package's metadata and returns before any command runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from stockctl.cli import alert, auth, bench, config, doctor, exchange, export, market, system
from stockctl.cli.common import err_console
from stockctl.errors import StockctlError

try:  # typer vendors click since 0.2x; before, its errors were click's own
    from typer import TyperException as ArgumentError
except ImportError:  # pragma: no cover
    from click import ClickException as ArgumentError

app = typer.Typer(
    name="stockctl",
    help="A terminal-first market and exchange sandbox. Start with [bold]stockctl up[/].",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version() -> str:
    """The installed stockctl's version (its package metadata), or the source tree's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("stockctl")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from stockctl import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"stockctl {version()}\n")
        raise typer.Exit()


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="STOCKCTL_HOME", help="State dir of the instance to use.", show_default=False),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    if home is not None:
        os.environ["STOCKCTL_HOME"] = str(home.expanduser().resolve())


app.add_typer(system.app)
app.add_typer(market.app)
app.add_typer(export.app)
app.add_typer(exchange.app)
app.add_typer(doctor.app)
app.add_typer(auth.app)
app.add_typer(auth.users_app, name="users", help="Operator commands: list, disable, enable accounts.")
app.add_typer(auth.keys_app, name="auth", help="Operator commands: list and rotate the auth daemons' signing keys.")
app.add_typer(bench.app, name="bench", help="Measure the system on this machine.")
app.add_typer(alert.app, name="alert")
app.add_typer(config.app, name="config")


@app.command("tui")
def tui_cmd(
    web: Annotated[
        bool, typer.Option("--web", help="Serve the terminal in a browser, behind a secret URL it prints.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --web.")] = 8703,
    web_max_sessions: Annotated[
        int | None,
        typer.Option("--web-max-sessions", help="Browser sessions --web serves at once."),
    ] = None,
) -> None:
    """Open the trading terminal (Textual); --web serves it in a browser."""
    from stockctl.cli.common import get_settings

    overrides = {} if web_max_sessions is None else {"web_max_sessions": web_max_sessions}
    settings = get_settings(**overrides)
    if web:
        from tui.web import serve

        serve(settings, settings.host, port)
        return
    from tui.app import make_app

    make_app(settings).run()


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr (the message may hold user input: it is never read as markup) and exit."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Console entry point: user errors become one line on stderr and an exit code."""
    try:
        code = app(standalone_mode=False)
    except StockctlError as exc:
        fail(str(exc), exc.exit_code)
    except ArgumentError as exc:  # bad arguments: the parser's reason in one line, not its usage box
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        fail(exc.format_message().replace("Value error, ", "").rstrip(".") + hint, exc.exit_code)
    except typer.Abort:
        fail("aborted", 1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
