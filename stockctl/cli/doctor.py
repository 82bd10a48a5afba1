"""``stockctl doctor``: check the machine and the instance, and say what to fix."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from stockctl.cli.common import JsonOpt, console, get_settings
from stockctl.cli.tables import FormatOpt, Report, emit
from stockctl.errors import StockctlError

if TYPE_CHECKING:
    from stockctl.settings import Settings

app = typer.Typer()


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str


def _version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run: {exc}"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "unknown"


def run_checks(settings: Settings) -> list[Check]:
    from stockctl import servercreds
    from stockctl.instance import infra
    from stockctl.instance.supervisor import read_state, supervisor_pid

    checks: list[Check] = []
    py = sys.version_info
    checks.append(Check("python", "ok" if py >= (3, 11) else "fail", f"{py.major}.{py.minor}.{py.micro}"))
    from stockctl.exchange import COMPILED, engine_build, engine_build_note

    # The matching engine's build: pure Python is correct but slower (warn), unless asked for.
    build, why = engine_build(), engine_build_note()
    asked = os.environ.get("STOCKCTL_ENGINE", "").strip().lower() == "pure"
    checks.append(Check("engine", "ok" if build == COMPILED or asked else "warn", f"{build}: {why}"))

    for name, finder in (("nats-server", infra.nats_server_binary), ("valkey-server", infra.redis_server_binary)):
        try:
            path = str(finder())
            checks.append(Check(name, "ok", f"{_version(path)} ({path})"))
        except StockctlError as exc:
            status = (
                "warn"
                if (name == "nats-server" and settings.nats_url) or (name == "valkey-server" and settings.redis_url)
                else "fail"
            )
            checks.append(Check(name, status, str(exc)))

    home = settings.home
    if home.exists():
        mode = stat.S_IMODE(home.stat().st_mode)
        writable = os.access(home, os.W_OK)
        status = "ok" if writable and mode & 0o077 == 0 else ("fail" if not writable else "warn")
        fix = "" if status == "ok" else (f"; run chmod 700 {home}" if writable else "; not writable")
        checks.append(Check("state dir", status, f"{home} mode {mode:o}{fix}"))
    else:
        checks.append(Check("state dir", "ok", f"{home} (created by `stockctl up`)"))

    secret_files = {
        "signing keys": [settings.secrets_dir / name for name in ("jwt-keyring.key", "jwt-ed25519.pem")],
        "server creds": [
            settings.secrets_dir / name for name in (servercreds.CREDENTIALS_FILE, "nats.conf", "valkey.conf")
        ],
    }
    for label, paths in secret_files.items():
        present = [p for p in paths if p.exists()]
        loose = [p for p in present if stat.S_IMODE(p.stat().st_mode) != 0o600]
        if loose:
            mode = stat.S_IMODE(loose[0].stat().st_mode)
            checks.append(Check(label, "fail", f"{loose[0]} mode {mode:o}; run chmod 600 {loose[0]}"))
        elif present:
            checks.append(
                Check(label, "ok", f"{present[0]} mode 600" + (" (and its configs)" if len(present) > 1 else ""))
            )

    running = supervisor_pid(settings) is not None
    ports = {
        "nats_port": settings.nats_port,
        "nats_monitor_port": settings.nats_monitor_port,
        "redis_port": settings.redis_port,
        "gateway_port": settings.gateway_port,
        "ws_port": settings.ws_port,
        "auth_port": settings.auth_port,
    }
    busy = [f"{p} ({n})" for n, p in ports.items() if not infra.port_is_free(settings.host, p)]
    if running:
        checks.append(Check("ports", "ok", "in use by this running instance"))
    elif busy:
        checks.append(Check("ports", "fail", f"in use: {', '.join(busy)}; free them or set STOCKCTL_<NAME>"))
    else:
        checks.append(Check("ports", "ok", f"free on {settings.host}"))

    if running:
        state = read_state(settings) or {}
        bad = [c["name"] for c in state.get("components", []) if c["state"] != "running"]
        checks.append(
            Check(
                "instance",
                "ok" if not bad else "fail",
                "all components running" if not bad else f"not running: {', '.join(bad)}; see `stockctl logs {bad[0]}`",
            )
        )
        from stockctl.cli.system import status_rows

        daemon_rows = [r for r in status_rows(settings) if r.get("kind") == "daemon" and r.get("pid")]
        unready = [
            f"{r['name']} ({r.get('health') or 'no ops address'})" for r in daemon_rows if r.get("health") != "ready"
        ]
        checks.append(
            Check(
                "readiness",
                "ok" if not unready else "fail",
                f"{len(daemon_rows)} daemons answer /readyz"
                if not unready
                else f"not ready: {', '.join(unready)}; see `stockctl logs NAME`",
            )
        )
        if not settings.nats_url:
            import urllib.request

            try:
                with urllib.request.urlopen(
                    f"http://{settings.host}:{settings.nats_monitor_port}/varz", timeout=2
                ) as resp:
                    varz = json.loads(resp.read())
                checks.append(
                    Check(
                        "nats",
                        "ok",
                        f"{varz.get('version')} up {varz.get('uptime')}, {varz.get('connections')} connections",
                    )
                )
                # The clock: stream ages, token expiry and candles all trust it.
                server_now = datetime.fromisoformat(varz["now"].replace("Z", "+00:00")[:26] + "+00:00")
                drift = abs(server_now.timestamp() - time.time())
                checks.append(
                    Check("clock", "ok" if drift < 1 else "warn", f"{drift * 1000:.0f} ms from the NATS server's clock")
                )
            except Exception as exc:  # report it; the doctor must not crash
                checks.append(Check("nats", "fail", f"monitor not answering: {exc}"))
    else:
        checks.append(Check("instance", "warn", "not running; start it with `stockctl up`"))

    target = home if home.exists() else home.parent if home.parent.exists() else None
    if target is not None:
        free = shutil.disk_usage(target).free
        status = "ok" if free > 1 << 30 else "warn" if free > 200 << 20 else "fail"
        checks.append(Check("disk", status, f"{free / (1 << 30):.1f} GiB free at {target}"))

    return checks


@app.command()
def doctor(json_out: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """Check Python, server binaries, state dir, secrets, ports, the instance, disk and clock."""
    checks = run_checks(get_settings())

    def draw() -> None:
        mark = {"ok": "[green]✔ ok  [/]", "warn": "[yellow]! warn[/]", "fail": "[bold red]✘ fail[/]"}
        for c in checks:
            console.print(f"{mark[c.status]}  [bold]{c.name:<13}[/] {c.detail}", soft_wrap=True)

    report = Report(
        [asdict(c) for c in checks],
        ("name", "status", "detail"),
        ([c.name, c.status, c.detail] for c in checks),
        draw=draw,
    )
    emit(report, fmt, json_out)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
