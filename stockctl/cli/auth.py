"""``register``, ``login``, ``logout``, ``whoami``; the operator's ``users list/disable/enable``
and ``auth keys`` / ``auth rotate-key`` (the signing keys).

The auth client and the users store (Redis) are imported inside the commands (start-up time).
"""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stockctl.cli.common import JsonOpt, console, get_settings, print_json
from stockctl.cli.tables import Col, FormatOpt, Report, emit, records
from stockctl.errors import ServiceUnavailable, StockctlError, UsageError

if TYPE_CHECKING:
    from stockctl.client.credentials import Session

app = typer.Typer()
users_app = typer.Typer(
    no_args_is_help=True,
    help="Accounts of the local instance (operator commands: they talk to its Redis directly).",
)

EmailArg = Annotated[str, typer.Argument(help="Email address of the account.", show_default=False)]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin instead of prompting."),
]


def read_password(from_stdin: bool, confirm: bool) -> str:
    """The password, from stdin or a hidden prompt (twice when ``confirm``). Never echoed."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError(
                "no password on stdin", "pipe one line in, e.g. `... | stockctl login EMAIL --password-stdin`"
            )
        return password
    return typer.prompt(
        "Password", hide_input=True, confirmation_prompt="Repeat password" if confirm else False, err=True
    )


def _session_doc(session: Session) -> dict[str, Any]:
    return {"email": session.email, "base_url": session.base_url, "expires_in": int(session.expires_in())}


def _start_session(email: str, password_stdin: bool, json_out: bool, new_account: bool) -> None:
    from stockctl.client.credentials import AuthClient, Session, base_url, load, save

    settings = get_settings()
    url = base_url(settings)
    password = read_password(password_stdin, confirm=new_account)
    previous = load(settings)
    with AuthClient(url) as client:
        doc = client.register(email, password) if new_account else client.login(email, password)
        if previous is not None and previous.base_url == url:
            with contextlib.suppress(StockctlError):  # best effort: do not leave the old session alive
                client.logout(previous.refresh_token)
    session = Session.from_tokens(url, doc)
    save(settings, session)
    if json_out:
        print_json(_session_doc(session))
        return
    verb = "registered and logged in" if new_account else "logged in"
    console.print(f"{verb} as [bold]{session.email}[/] at {url}")


@app.command()
def register(email: EmailArg, password_stdin: PasswordStdin = False, json_out: JsonOpt = False) -> None:
    """Create an account on the instance and log in (asks for the password twice)."""
    _start_session(email, password_stdin, json_out, new_account=True)


@app.command()
def login(email: EmailArg, password_stdin: PasswordStdin = False, json_out: JsonOpt = False) -> None:
    """Log in; the session is kept for this instance in your config dir (mode 0600)."""
    _start_session(email, password_stdin, json_out, new_account=False)


@app.command()
def logout() -> None:
    """Revoke the session on the instance and forget it here."""
    from stockctl.client.credentials import AuthClient, clear, load

    settings = get_settings()
    session = load(settings)
    if session is None:
        console.print("not logged in")
        return
    try:
        with AuthClient(session.base_url) as client:
            client.logout(session.refresh_token)
    except ServiceUnavailable as exc:
        clear(settings)
        raise ServiceUnavailable(
            f"forgot the local session, but could not revoke it on the server: {exc.message}",
            "it expires on its own; log out again when the instance is up to revoke it now",
        ) from None
    clear(settings)
    console.print(f"logged out {session.email}")


@app.command()
def whoami(json_out: JsonOpt = False) -> None:
    """The account this CLI is logged in as, checked with the server."""
    from stockctl.client.credentials import (
        AuthClient,
        AuthError,
        NotLoggedIn,
        access_token,
        base_url,
        load,
        refresh_session,
    )

    settings = get_settings()
    token = access_token(settings)
    session = load(settings)
    url = session.base_url if session else base_url(settings)
    with AuthClient(url) as client:
        try:
            me = client.me(token)
        except AuthError as exc:
            if exc.status != 401:
                raise
            # The server no longer takes this token (key rotated, clock skew): refresh once.
            try:
                me = client.me(refresh_session(settings, force=True).access_token)
            except AuthError as again:
                if again.status != 401:
                    raise
                raise NotLoggedIn(again.message) from None
    if json_out:
        print_json({**me, "base_url": url})
        return
    console.print(f"[bold]{me['email']}[/] at {url} (registered {me.get('created', '-')})")


# --- operator -----------------------------------------------------------------------------------


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _state(disabled: bool) -> str:
    return "[red]disabled[/]" if disabled else "[green]active[/]"


@users_app.command("list")
def users_list(json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """Every account: email, registration time, disabled, live sessions."""
    from stockctl.auth.users import list_users

    users = [u.doc() for u in list_users(get_settings())]
    fields = ("email", "created", "disabled", "sessions")
    report = Report(
        users,
        fields,
        records(users, fields),
        [Col("email", "left"), Col("registered", "left"), Col("state", "left"), Col("sessions")],
        [[u["email"], _when(u["created"]), _state(u["disabled"]), str(u["sessions"])] for u in users],
        empty="no accounts yet: `stockctl register EMAIL`",
    )
    emit(report, fmt, json_out)


@users_app.command()
def disable(email: EmailArg) -> None:
    """Lock an account out now: no login or refresh, sessions revoked, open connections closed."""
    from stockctl.auth.users import set_disabled

    settings = get_settings()
    info = set_disabled(settings, email, True)
    if info.announced:
        sockets = "its open connections are closed now"
    else:  # NATS unreachable: each gateway's periodic check finds it
        sockets = f"its open connections are closed within {settings.disabled_check_s:g} s"
    console.print(f"disabled [bold]{info.email}[/]; its sessions are revoked, its tokens refused and {sockets}")


@users_app.command()
def enable(email: EmailArg) -> None:
    """Let a disabled account log in again."""
    from stockctl.auth.users import set_disabled

    info = set_disabled(get_settings(), email, False)
    console.print(f"enabled [bold]{info.email}[/]")


# --- signing keys (operator) ---------------------------------------------------------------------

keys_app = typer.Typer(
    no_args_is_help=True,
    help="Operator commands: the signing keys every auth daemon of the instance shares (in its Redis).",
)


@keys_app.command("keys")
def keys_list(json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """The signing keys, newest first: current (signs), retiring (still verifies), retired."""
    from stockctl.auth.keyring import list_keys

    keys = list_keys(get_settings())
    fields = ("kid", "state", "created", "retire_at")
    states = {"current": "[green]current[/]", "retiring": "[yellow]retiring[/]", "retired": "[dim]retired[/]"}
    report = Report(
        keys,
        fields,
        records(keys, fields),
        [Col("kid", "left"), Col("state", "left"), Col("created", "left"), Col("retires", "left", 1)],
        [[k["kid"], states[k["state"]], _when(k["created"]), _when(k["retire_at"] or "-")] for k in keys],
        empty="no signing keys yet: an auth daemon makes the first one (`stockctl up`)",
    )
    emit(report, fmt, json_out)


@keys_app.command("rotate-key")
def rotate_key(json_out: JsonOpt = False) -> None:
    """Make a new current signing key; the old one verifies until its tokens have expired.

    Every auth daemon signs with the new key within signing_key_reload_s. The old key stays in
    JWKS for access_token_ttl_s, two reload periods and signing_key_grace_s, then it is retired.
    """
    from stockctl.auth.keyring import rotate_key as rotate

    doc = rotate(get_settings())
    if json_out:
        print_json(doc)
        return
    console.print(
        f"new signing key [bold]{doc['kid']}[/]: auth daemons sign with it within {doc['picked_up_within_s']:g} s"
    )
    if doc["replaced"]:
        console.print(f"key {doc['replaced']} still verifies until {_when(doc['retire_at'])}, then leaves JWKS")
