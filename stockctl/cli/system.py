"""``up``, ``down``, ``status``, ``logs``, ``restart``: control of the local instance.

The supervisor and server modules are imported inside the commands (start-up time); the
component names in help texts and completion come from ``stockctl.components``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stockctl.cli.common import JsonOpt, console, err_console, fmt_duration, get_settings, print_json
from stockctl.cli.complete import complete_components, complete_log_sources, complete_running
from stockctl.cli.tables import Col, FormatOpt, Report, emit, fitted_table
from stockctl.components import COMPONENTS, LOG_SOURCES, base_name
from stockctl.errors import NotRunningError, StartupError, UsageError

if TYPE_CHECKING:
    from stockctl.settings import Settings

app = typer.Typer()


class LogFormat(StrEnum):
    text = "text"
    json = "json"


STATE_STYLE = {
    "running": "green",
    "starting": "yellow",
    "backoff": "red",
    "failed": "bold red",
    "stopping": "yellow",
    "stopped": "dim",
}


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            return fh.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _last_log_line(settings: Settings, name: str) -> str:
    """The most telling line of a component's last run: its last error, else its last line."""
    lines = _tail(settings.log_dir / f"{name}.log", 200)
    starts = [i for i, line in enumerate(lines) if line.startswith("--- ")]
    run = [line.strip() for line in lines[starts[-1] + 1 if starts else 0 :] if line.strip()]
    telling = re.compile(r"error|fatal|fail|not defined|in use|denied|cannot", re.I)
    for line in reversed(run):
        if telling.search(line):
            return line
    return run[-1] if run else "no log output"


def status_rows(settings: Settings) -> list[dict[str, Any]]:
    from stockctl.instance.supervisor import read_state

    state = read_state(settings) or {}
    now = time.time()
    rows = []
    for comp in state.get("components", []):
        running = comp["state"] in ("running", "starting") and comp.get("started")
        row = {**comp, "uptime_s": round(now - comp["started"], 1) if running else None}
        if comp.get("kind") == "daemon" and not row.get("ops") and running:
            # The supervisor samples status files once a second; just after start ask the file.
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads((settings.run_dir / f"{comp['name']}.json").read_text())
                row["ops"] = (doc.get("info") or {}).get("ops")
        base = base_name(comp["name"])  # processor of processor-2 (`up --cluster` runs two)
        if base == "processor" and running:
            with contextlib.suppress(OSError, ValueError):
                info = json.loads((settings.run_dir / f"{comp['name']}.json").read_text()).get("info") or {}
                if "partitions" in info:
                    keys = ("partitions", "partitions_total", "processors")
                    row["partitions"] = {k: info.get(k) for k in keys}
        if base == "matching" and running:
            with contextlib.suppress(OSError, ValueError):
                info = json.loads((settings.run_dir / f"{comp['name']}.json").read_text()).get("info") or {}
                if "role" in info:
                    row["role"] = {k: info.get(k) for k in ("role", "term", "group", "markets")}
        if comp["name"] == "feeds" and running:
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads((settings.run_dir / "feeds.json").read_text())
                row["feeds"] = feed_health((doc.get("info") or {}).get("feeds") or {}, now)
        rows.append(row)
    _probe_health(rows)
    return rows


def feed_health(feeds: dict[str, Any], now: float) -> dict[str, Any]:
    """Per feed: connected, age of the last message, reconnects, gaps (as the daemon wrote them)."""
    out = {}
    for name, h in feeds.items():
        last = h.get("last_message")
        out[name] = {**h, "last_message_age_s": round(now - last, 1) if last else None}
    return out


def _feed_line(name: str, h: dict[str, Any]) -> list[str]:
    state = "[green]connected[/]" if h.get("connected") else "[red]disconnected[/]"
    age = h.get("last_message_age_s")
    parts = [
        f"last message {fmt_duration(age)} ago" if age is not None else "no message yet",
        f"gaps {h.get('gaps', 0)} ({h.get('missed', 0)} trades missed)",
        f"reconnects {h.get('reconnects', 0)}",
    ]
    if h.get("malformed"):
        parts.append(f"malformed {h['malformed']}")
    if not h.get("connected") and h.get("last_error"):
        parts.append(h["last_error"])
    return [f"  feed {name}", "", state, "", "", ",".join(h.get("symbols", [])), "", "", "; ".join(parts)]


def _probe_health(rows: list[dict[str, Any]]) -> None:
    """Ask each running daemon's ``/readyz`` now (all at once, 1 s at most) and note the answer.

    With ``http.client`` in threads, not an HTTP client library: ``up`` ends with this table,
    and an import of httpx and asyncio would be most of its time once the daemons are ready.
    """
    import http.client
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlsplit

    def probe(row: dict[str, Any]) -> None:
        url = urlsplit(row["ops"])
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=1.0)
        try:
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            failing = [name for name, ok in (doc.get("checks") or {}).items() if not ok]
            row["health"] = "ready" if resp.status == 200 else "not ready: " + ", ".join(failing)
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            row["health"] = "no answer"
        finally:
            conn.close()

    targets = [r for r in rows if r.get("ops") and r.get("pid")]
    if targets:
        with ThreadPoolExecutor(len(targets)) as pool:
            list(pool.map(probe, targets))


STATUS_COLS = [
    Col("component", "left"),
    Col("pid"),
    Col("state", "left"),
    Col("uptime"),
    Col("restarts", priority=2),
    Col("address", "left", priority=3),
    Col("rate/s", priority=1),
    Col("health", "left", priority=2),
    Col("message", "left", priority=4),
]


def _health_markup(health: str | None) -> str:
    if health is None:
        return "-"
    return f"[green]{health}[/]" if health == "ready" else f"[red]{health}[/]"


def status_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    table_rows = []
    for r in rows:
        style = STATE_STYLE.get(r["state"], "")
        rate = "-" if r.get("rate") is None else f"{r['rate']:,.1f}"
        table_rows.append(
            [
                r["name"],
                str(r["pid"] or "-"),
                f"[{style}]{r['state']}[/]",
                fmt_duration(r["uptime_s"]),
                str(r["restarts"]),
                r["address"] or "-",
                rate,
                _health_markup(r.get("health")),
                r.get("message") or "",
            ]
        )
        for name, h in (r.get("feeds") or {}).items():
            table_rows.append(_feed_line(name, h))
        if r.get("partitions"):
            p = r["partitions"]
            held = f"{len(p.get('partitions') or [])} of {p.get('partitions_total')}"  # shown at any width
            table_rows.append(["  partitions", "", held, "", "", "", "", "", partitions_line(p)])
        if r.get("role"):
            role = r["role"]
            table_rows.append(["  role", "", str(role.get("role")), "", "", "", "", "", role_line(role)])
    return table_rows


SERVER_ROLES = {
    "primary": "Valkey primary: serves its slots",
    "replica": "Valkey replica: takes over if its primary fails",
    "meta leader": "JetStream meta leader: places streams and consumers",
    "follower": "JetStream meta follower",
}


def role_line(role: dict[str, Any]) -> str:
    """What a matching daemon's status says of its part in the market group."""
    what = role.get("role")
    if what in SERVER_ROLES:
        return SERVER_ROLES[what]
    group = role.get("group") or "main"
    markets = ",".join(role.get("markets") or [])
    if what == "active":
        led = f"leads group {group} ({markets})" if group != "main" else "leads the markets"
        return f"{led} (term {role.get('term')})"
    if what == "lapsed":
        return "its lease lapsed: applies nothing until it is renewed"
    of = f" of group {group}" if group != "main" else ""
    return f"stands by: takes over when the active matching daemon{of}'s lease lapses"


def partitions_line(p: dict[str, Any]) -> str:
    """What a processor's status says of its share of the tick partitions."""
    held = p.get("partitions") or []
    total, others = p.get("partitions_total"), p.get("processors") or 1
    share = f"holds {','.join(map(str, held))} of {total}" if held else f"holds none of {total}"
    return f"{share}; {others} processors share them" if others > 1 else f"{share}; the only processor"


def render_status(settings: Settings, rows: list[dict[str, Any]]) -> None:
    console.print(fitted_table(STATUS_COLS, status_table(rows), console.width, title=f"stockctl @ {settings.home}"))


STATUS_FIELDS = (
    "name",
    "kind",
    "pid",
    "state",
    "uptime_s",
    "restarts",
    "address",
    "ops",
    "rate",
    "health",
    "message",
    "partitions",
    "role",
)


@app.command()
def up(
    attach: Annotated[bool, typer.Option("--attach", help="Stay in the foreground; Ctrl-C stops everything.")] = False,
    only: Annotated[
        str | None,
        typer.Option(
            help=f"Start only these components, comma separated: {', '.join(COMPONENTS)}.",
            autocompletion=complete_components,
        ),
    ] = None,
    nats_url: Annotated[
        str | None,
        typer.Option(
            help="Use this NATS server instead of starting one (nats://user:pass@host:port, or a comma list of"
            " a cluster's servers: nats://user:pass@h1:4222,h2:4222; the variable keeps the password out of `ps`).",
            envvar="STOCKCTL_NATS_URL",
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Use this Redis server instead of starting one (redis://:pass@host:port/0 or rediss://), or a"
            " Redis Cluster (redis+cluster://:pass@h1:port,h2:port); the variable keeps the password out of `ps`.",
            envvar="STOCKCTL_REDIS_URL",
        ),
    ] = None,
    nats_port: Annotated[int | None, typer.Option(help="Port of the embedded nats-server.")] = None,
    nats_monitor_port: Annotated[int | None, typer.Option(help="Monitoring port of the embedded nats-server.")] = None,
    redis_port: Annotated[int | None, typer.Option(help="Port of the embedded valkey-server.")] = None,
    symbols: Annotated[str | None, typer.Option(help="Simulated symbols, comma separated.")] = None,
    rate: Annotated[float | None, typer.Option(help="Simulated ticks per second per symbol.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for a reproducible price stream.")] = None,
    replay: Annotated[
        Path | None, typer.Option(help="Replay this CSV (timestamp,symbol,price[,volume]) instead of simulating.")
    ] = None,
    replay_speed: Annotated[float | None, typer.Option(help="Replay speed factor (0: as fast as possible).")] = None,
    liquidity: Annotated[
        bool | None, typer.Option("--liquidity/--no-liquidity", help="Simulated market makers on the exchange.")
    ] = None,
    feed: Annotated[
        list[str] | None,
        typer.Option(
            help="Live exchange trades, e.g. binance:BTCUSDT,ETHUSDT@aggTrade or coinbase:BTC-USD (repeatable)."
            " Replaces the simulator unless --simulate."
        ),
    ] = None,
    simulate: Annotated[
        bool | None,
        typer.Option("--simulate/--no-simulate", help="Run the price simulator (default: on; off with --feed)."),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(help="Daemon logs: text, or json (one object per line with request/order ids)."),
    ] = None,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Run a cluster on this machine: 3 NATS nodes (streams at R3), a Valkey Cluster of 3 primaries"
            " and 3 replicas, and two of each processor, matching (active and standby), auth, gateway and alerts.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Start NATS, Redis and the daemons; return once all are ready."""
    settings = get_settings(
        cluster=cluster or None,
        only=only,
        nats_url=nats_url,
        redis_url=redis_url,
        nats_port=nats_port,
        nats_monitor_port=nats_monitor_port,
        redis_port=redis_port,
        symbols=symbols,
        rate=rate,
        seed=seed,
        replay_csv=replay.expanduser().resolve() if replay else None,
        replay_speed=replay_speed,
        liquidity=liquidity,
        feeds=feed or None,
        simulate=simulate,
        log_format=log_format.value if log_format else None,
    )
    start_instance(settings, attach, json_out)


def _saved_settings_path(settings: Settings) -> Path:
    # In secrets/, not run/: the flags of `up` may include credentialed server URLs.
    return settings.secrets_dir / "up-settings.json"


def start_instance(settings: Settings, attach: bool = False, json_out: bool = False) -> None:
    """Check ports and inputs, then run the supervisor (detached, or in the foreground)."""
    from stockctl.instance import infra
    from stockctl.instance.supervisor import run_foreground, supervisor_pid
    from stockctl.marketdata.replay import ReplayError, validate

    settings.ensure_dirs()
    pid = supervisor_pid(settings)
    if pid is not None:
        err_console.print(f"stockctl is already running in {settings.home} (supervisor pid {pid})")
        _show_status(settings, json_out)
        return
    comps = settings.components()
    ports = {}
    if settings.cluster:
        from stockctl.instance.cluster import cluster_ports

        if settings.nats_url or settings.redis_url or settings.only:
            raise UsageError("--cluster runs its own servers and every daemon: drop --nats-url, --redis-url and --only")
        infra.nats_server_binary()
        infra.redis_server_binary()
        for setting, port in cluster_ports(settings):
            infra.check_ports(settings.host, {setting: port})
    elif "nats" in comps:
        ports |= {"nats_port": settings.nats_port, "nats_monitor_port": settings.nats_monitor_port}
        infra.nats_server_binary()
    if "redis" in comps:
        ports["redis_port"] = settings.redis_port
        infra.redis_server_binary()
    if "auth" in comps:
        ports["auth_port"] = settings.auth_port
    if "gateway" in comps:
        ports |= {"gateway_port": settings.gateway_port, "ws_port": settings.ws_port}
    infra.check_ports(settings.host, ports)
    if settings.markets_file is not None:
        import msgspec

        from stockctl.exchange.engine import Exchange
        from stockctl.wire.exchange import load_markets

        try:
            Exchange(load_markets(str(settings.markets_file)))
        except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UsageError(f"bad markets file {settings.markets_file}: {exc}") from None
    if settings.market_groups:
        from stockctl.exchange.groups import GroupsError

        try:
            settings.groups()
        except GroupsError as exc:
            raise UsageError(f"STOCKCTL_MARKET_GROUPS: {exc}") from None
    if settings.replay_csv is not None:
        try:
            validate(settings.replay_csv)
        except ReplayError as exc:
            raise UsageError(f"cannot replay: {exc}") from None
    # `restart` brings the instance back with the same flags.
    fd = os.open(_saved_settings_path(settings), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(settings.model_dump_json())
    if attach:
        import logging

        err_console.print(f"stockctl running in the foreground ({settings.home}); Ctrl-C stops it")
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s supervisor: %(message)s")
        run_foreground(settings)
        return
    _spawn_supervisor(settings)
    _show_status(settings, json_out)
    if not json_out:
        err_console.print(
            "next: [bold]stockctl register EMAIL[/] (or login), then [bold]stockctl prices[/], "
            "[bold]stockctl watch AAPL[/], [bold]stockctl tui[/]; [bold]stockctl down[/] stops it all"
        )


def _spawn_supervisor(settings: Settings) -> None:
    from stockctl.instance import launch
    from stockctl.instance.supervisor import read_state

    # Its own session, and no death with the CLI: the supervisor outlives this command.
    with (settings.log_dir / "supervisor.log").open("ab") as log:
        proc = launch.start(
            launch.module_argv(launch.SUPERVISOR),
            log=log,
            env=launch.child_env(settings, os.environ),
            cwd=settings.home,
            new_session=True,
            die_with_parent=False,
        )
    deadline = time.monotonic() + settings.start_timeout
    with console.status("starting stockctl...", spinner="dots") as spinner:
        while True:
            if proc.poll() is not None:
                tail = " / ".join(_tail(settings.log_dir / "supervisor.log", 3)) or "no output"
                raise StartupError(
                    f"the supervisor exited with {proc.returncode}: {tail}", "see `stockctl logs supervisor`"
                )
            state = read_state(settings)
            comps = (state or {}).get("components", [])
            waiting = [c["name"] for c in comps if c["state"] != "running"]
            bad = [c for c in comps if c["state"] in ("failed", "backoff")]
            if bad:
                name = bad[0]["name"]
                why = _last_log_line(settings, name)
                _stop_supervisor(settings, proc.pid, quiet=True)
                raise StartupError(f"{name} failed to start: {why}", f"see `stockctl logs {name}`")
            if comps and not waiting:
                return
            if time.monotonic() > deadline:
                _stop_supervisor(settings, proc.pid, quiet=True)
                raise StartupError(
                    f"not ready after {settings.start_timeout:.0f}s: {', '.join(waiting)}",
                    f"see `stockctl logs {waiting[0] if waiting else 'supervisor'}`",
                )
            spinner.update(f"starting stockctl... waiting for {', '.join(waiting) or 'supervisor'}")
            time.sleep(0.02)  # state.json is small; the supervisor notices readiness as quickly


def _show_status(settings: Settings, json_out: bool) -> None:
    rows = status_rows(settings)
    if json_out:
        print_json(rows)
    else:
        render_status(settings, rows)


def _stop_supervisor(settings: Settings, pid: int, quiet: bool = False) -> None:
    """SIGTERM the supervisor and wait for it; it stops its children in order."""
    from stockctl.instance.supervisor import read_state, supervisor_pid

    n = len((read_state(settings) or {}).get("components", [])) or 4
    budget = settings.stop_timeout * (n + 1) + 5
    if pid > 0:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + budget
    with console.status("stopping stockctl...", spinner="dots") if not quiet else _null():
        while supervisor_pid(settings) is not None:
            if time.monotonic() > deadline:
                if pid > 0:
                    os.killpg(pid, signal.SIGKILL)
                raise StartupError(f"the supervisor (pid {pid}) did not stop within {budget:.0f}s; killed it")
            time.sleep(0.1)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _kill_leftovers(settings: Settings) -> int:
    """After a supervisor crash, stop the children it left (those still named in state.json)."""
    from stockctl.instance.registry import remove_instance
    from stockctl.instance.supervisor import read_state

    killed = 0
    for comp in (read_state(settings) or {}).get("components", []):
        pid = comp.get("pid")
        if not pid:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
            killed += 1
        except (ProcessLookupError, PermissionError):
            continue
    (settings.run_dir / "state.json").unlink(missing_ok=True)
    remove_instance(settings)
    return killed


@app.command()
def down() -> None:
    """Stop everything gracefully (SIGTERM, then SIGKILL after the stop timeout)."""
    from stockctl.instance.supervisor import supervisor_pid

    settings = get_settings()
    pid = supervisor_pid(settings)
    if pid is None:
        killed = _kill_leftovers(settings)
        if killed:
            console.print(f"stopped {killed} processes left by a crashed supervisor")
        else:
            console.print("stockctl is not running")
        return
    _stop_supervisor(settings, pid)
    console.print("stockctl stopped")


@app.command()
def status(json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """Components with pid, state, uptime, restarts, address and message rate (exit 3 if down)."""
    from stockctl.cli.tables import Format, pick_format, records
    from stockctl.instance.supervisor import supervisor_pid

    settings = get_settings()
    chosen = pick_format(fmt, json_out)
    if supervisor_pid(settings) is None:
        if chosen is Format.json:
            print_json([])
            raise typer.Exit(3)
        raise NotRunningError(str(settings.home))
    rows = status_rows(settings)
    report = Report(
        rows,
        STATUS_FIELDS,
        records(rows, STATUS_FIELDS),
        STATUS_COLS,
        status_table(rows),
        title=f"stockctl @ {settings.home}",
    )
    emit(report, chosen)


@app.command()
def logs(
    name: Annotated[
        str,
        typer.Argument(
            help=f"Component: {', '.join(LOG_SOURCES)}.", autocompletion=complete_log_sources, show_default=False
        ),
    ],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines of history to show.")] = 50,
) -> None:
    """Show a component's log."""
    settings = get_settings()
    if name not in LOG_SOURCES:
        raise UsageError(f"unknown component {name!r}", f"choose one of {', '.join(LOG_SOURCES)}")
    path = settings.log_dir / f"{name}.log"
    if not path.exists():
        raise UsageError(f"no log for {name} yet in {settings.log_dir}", "start it with `stockctl up`")
    for line in _tail(path, lines):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if not follow:
        return
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        while True:
            chunk = fh.read()
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            else:
                if path.stat().st_size < fh.tell():  # truncated: start over
                    fh.seek(0)
                time.sleep(0.2)


@app.command()
def restart(
    name: Annotated[
        str | None,
        typer.Argument(
            help=f"Component to restart (one of {', '.join(COMPONENTS)} that runs); all when omitted.",
            autocompletion=complete_running,
        ),
    ] = None,
) -> None:
    """Restart one component (the supervisor brings it back), or the whole instance."""
    from stockctl.instance.supervisor import supervisor_pid
    from stockctl.settings import Settings

    settings = get_settings()
    if supervisor_pid(settings) is None:
        raise NotRunningError(str(settings.home))
    if name is None:
        path = _saved_settings_path(settings)
        if not path.exists():  # started by a stockctl that kept them elsewhere
            raise StartupError(
                f"the running instance's settings are not saved in {path}", "run `stockctl down`, then `stockctl up`"
            )
        saved = Settings.model_validate_json(path.read_text())
        down()
        start_instance(saved)
        return
    rows = {r["name"]: r for r in status_rows(settings)}
    if name not in rows:
        raise UsageError(f"unknown component {name!r}", f"running: {', '.join(rows)}")
    old = rows[name]["pid"]
    if old:
        os.killpg(old, signal.SIGTERM)
    deadline = time.monotonic() + settings.stop_timeout + settings.start_timeout
    with console.status(f"restarting {name}...", spinner="dots"):
        while time.monotonic() < deadline:
            row = {r["name"]: r for r in status_rows(settings)}.get(name)
            if row and row["state"] == "running" and row["pid"] and row["pid"] != old:
                console.print(f"{name} restarted (pid {row['pid']})")
                return
            time.sleep(0.1)
    raise StartupError(f"{name} did not come back within {deadline:.0f}s", f"see `stockctl logs {name}`")
