"""Shell completion of symbols, markets and component names (typer autocompletion callbacks).

The shell runs ``stockctl`` on every TAB (``_STOCKCTL_COMPLETE=complete_bash`` and the
words so far; ``stockctl --install-completion`` sets it up), so each callback is quick and
never fails: symbols and markets come from the running instance's gateway when it answers
within :data:`TIMEOUT_S` (with the stored login's token, never refreshed here), and
otherwise from the configuration (``symbols``, ``markets_file`` or the default markets),
silently. Component names are the supervisor's list (``stockctl.components``). A comma
separated option (``up --only nats,re``) completes its last name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import typer

from stockctl.components import COMPONENTS, LOG_SOURCES

if TYPE_CHECKING:
    from stockctl.settings import Settings

TIMEOUT_S = 0.3
"""How long a TAB waits for the running instance before falling back to the configuration."""


def _settings(ctx: typer.Context | None) -> Settings | None:
    """The settings as the command would see them (``--home`` included), or None if they are broken."""
    from stockctl.settings import load_settings

    home = None
    if ctx is not None:
        home = ctx.find_root().params.get("home")
    try:
        return load_settings(home=home)
    except Exception:  # completion never fails: a broken config just completes nothing from it
        return None


def instance_list(settings: Settings, path: str, timeout: float = TIMEOUT_S) -> Any:
    """``GET path`` on the running instance's gateway with the stored login's token; None if
    there is no instance, no answer within ``timeout``, or no usable answer."""
    import urllib.request

    from stockctl.client.credentials import load
    from stockctl.errors import StockctlError
    from stockctl.instance.registry import resolve_gateway_url
    from stockctl.wire.base_urls import split_urls

    try:
        url = split_urls(resolve_gateway_url(settings))[0]  # completion asks the first gateway only
        session = load(settings)
    except (StockctlError, OSError, ValueError):
        return None
    headers = {"Accept": "application/json"}
    if session is not None and session.fresh():
        headers["Authorization"] = f"Bearer {session.access_token}"
    req = urllib.request.Request(url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):  # refused, timed out, 401, not JSON: fall back
        return None


def _matching(names: Iterable[str], incomplete: str) -> list[str]:
    prefix = incomplete.upper()
    return sorted({n for n in names if n.upper().startswith(prefix)})


def symbols(settings: Settings) -> list[str]:
    """The running instance's symbols, else the configured ones."""
    found = instance_list(settings, "/api/v1/symbols")
    if isinstance(found, list) and all(isinstance(s, str) for s in found):
        return found
    return list(settings.symbols)


def markets(settings: Settings) -> list[str]:
    """The running instance's exchange markets, else those of ``markets_file`` or the defaults."""
    found = instance_list(settings, "/api/v1/markets")
    if isinstance(found, list) and all(isinstance(m, dict) and isinstance(m.get("symbol"), str) for m in found):
        return [m["symbol"] for m in found]
    from stockctl.wire.exchange import load_markets

    try:
        return [m.symbol for m in load_markets(str(settings.markets_file) if settings.markets_file else None)]
    except Exception:  # a broken markets file: `stockctl up` says what is wrong with it
        return []


def complete_symbols(ctx: typer.Context, incomplete: str) -> list[str]:
    """Symbols (and exchange markets, which are tickers too) starting with ``incomplete``."""
    settings = _settings(ctx)
    return [] if settings is None else _matching(symbols(settings), incomplete)


def complete_markets(ctx: typer.Context, incomplete: str) -> list[str]:
    """Exchange markets starting with ``incomplete``."""
    settings = _settings(ctx)
    return [] if settings is None else _matching(markets(settings), incomplete)


def _last_of_list(names: Iterable[str], incomplete: str) -> list[str]:
    head, sep, last = incomplete.rpartition(",")
    given = set(head.split(",")) if sep else set()
    return [f"{head}{sep}{n}" for n in names if n.startswith(last) and n not in given]


def complete_components(incomplete: str) -> list[str]:
    """Components ``up --only`` takes (comma separated: the last one is completed)."""
    return _last_of_list(COMPONENTS, incomplete)


def complete_log_sources(incomplete: str) -> list[str]:
    """Components with a log: the supervisor, the servers, the daemons."""
    return [n for n in LOG_SOURCES if n.startswith(incomplete)]


def complete_running(ctx: typer.Context, incomplete: str) -> list[str]:
    """Components of the running instance (from the supervisor's state), else every one."""
    settings = _settings(ctx)
    names: Iterable[str] = COMPONENTS
    if settings is not None:
        try:  # the supervisor's state file, read directly: its module would import the servers' clients
            state = json.loads((settings.run_dir / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        comps = state.get("components") if isinstance(state, dict) else None
        running = [c.get("name") for c in comps or [] if isinstance(c, dict)]
        names = [n for n in running if isinstance(n, str)] or COMPONENTS
    return [n for n in names if n.startswith(incomplete)]


def env_settings_names() -> list[str]:
    """Every setting ``config set`` takes (the Settings fields and the ``tui.keys.ACTION`` form)."""
    from stockctl.settings import Settings

    return [*Settings.model_fields, "tui.keys."]


def complete_setting(incomplete: str) -> list[str]:
    """Setting names for ``config set``."""
    return [n for n in env_settings_names() if n.startswith(incomplete)]


__all__ = [
    "TIMEOUT_S",
    "complete_components",
    "complete_log_sources",
    "complete_markets",
    "complete_running",
    "complete_setting",
    "complete_symbols",
    "instance_list",
    "markets",
    "symbols",
]
