"""What the ``stockctl bench`` benchmarks share: a private stack, CPU sampling, pacing, result rendering.

A benchmark that needs servers runs them on a :class:`PrivateStack` in a temporary
directory (:func:`run_private`), so it never touches, and is never disturbed by, a running
instance: a nats-server (JetStream) and a valkey-server on free ports, started the way the
supervisor starts them (:mod:`stockctl.instance.infra`), then the real daemons (``python -m daemons
NAME``) configured through :meth:`Settings.to_env` as the supervisor configures them. Every
process it starts is stopped in reverse order, whatever happens.

:class:`CpuMeter` and :class:`SchedWaitMeter` say where the CPU went during a measurement
(Linux ``/proc``); :func:`paced` offers work at a steady rate and :func:`wait_until` drains
what is left; the ``fmt_*`` and ``*_table`` helpers draw the tables and verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from stockctl import servercreds
from stockctl.errors import StartupError, StockctlError, UsageError
from stockctl.instance import infra, launch
from stockctl.settings import ENV_PREFIX, Settings, mask_url
from stockctl.wire.exchange import Accepted, Cancelled, Event, Trade
from stockctl.wire.nats_urls import nats_options

# nats-py (~150 ms to import), httpx and rich are imported where used: the CLI imports this module
# at start-up for every command, not only for ``stockctl bench``.
if TYPE_CHECKING:
    import httpx
    from nats.aio.client import Client as NATS
    from rich.table import Table

LOCALHOST = "127.0.0.1"
SERVER_START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
REPORT_EVERY_S = 0.25
"""Period of the progress lines while offering or draining."""


class BenchError(StockctlError):
    """The benchmark could not run to the end."""


ProgressFn = Callable[[str], None]
Envs = dict[str, dict[str, str]] | None
"""Environments of daemons, by name (:meth:`PrivateStack.start_daemons`)."""


def no_progress(_: str) -> None:
    """A :data:`ProgressFn` that reports nothing."""


# --- figures -----------------------------------------------------------------------------

N = TypeVar("N", int, float)


def percentile(sorted_values: Sequence[N], q: float) -> N:
    """Nearest-rank percentile of already sorted values (``q`` in 0..1)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, int(-(-q * len(sorted_values) // 1)))  # ceil(q * n), at least 1
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ns_to_ms(ns: float) -> float:
    return round(ns / 1e6, 3)


def pct_ms(sorted_ns: Sequence[int], q: float) -> float | None:
    """A percentile of sorted nanoseconds, in ms (None for no values)."""
    return ns_to_ms(percentile(sorted_ns, q)) if sorted_ns else None


def parse_rates(text: str) -> list[int]:
    """``"1000,5k,20000"`` -> ``[1000, 5000, 20000]`` (sorted, de-duplicated)."""
    rates: set[int] = set()
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1
        if part.endswith("k"):
            part, mult = part[:-1], 1000
        try:
            value = float(part) * mult
        except ValueError:
            raise UsageError(
                f"bad rate {part!r} in --rates", "give ticks per second, e.g. --rates 1000,5000,20k"
            ) from None
        if not 1 <= value <= 1_000_000:
            raise UsageError(f"rate {value:g} out of range", "rates are 1 to 1,000,000 ticks per second")
        rates.add(int(value))
    if not rates:
        raise UsageError("--rates is empty", "e.g. --rates 1000,5000,20000")
    return sorted(rates)


def price_text(ticks: int, tick_size: str) -> str:
    """A price of ``ticks`` ticks as a decimal string (``2001`` at ``0.05`` -> ``100.05``)."""
    whole, _, frac = tick_size.partition(".")
    dp = len(frac)
    value = ticks * int(whole + frac)
    if not dp:
        return str(value)
    s = str(value).rjust(dp + 1, "0")
    return f"{s[:-dp]}.{s[-dp:]}"


class LiveOrders:
    """Live resting order ids with O(1) add, remove and uniform random choice (to pick one to cancel).

    :meth:`observe` keeps it up to date from the engine's events.
    """

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.pos: dict[int, int] = {}
        self.owner: dict[int, tuple[str, str]] = {}

    def add(self, oid: int, user: str, market: str) -> None:
        if oid in self.pos:
            return
        self.pos[oid] = len(self.ids)
        self.ids.append(oid)
        self.owner[oid] = (user, market)

    def discard(self, oid: int) -> None:
        i = self.pos.pop(oid, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != oid:
            self.ids[i] = last
            self.pos[last] = i
        del self.owner[oid]

    def observe(self, ev: Event) -> None:
        """One engine event: a resting limit order is added; one filled or cancelled is removed."""
        if isinstance(ev, Trade):
            if ev.maker_remaining == "0":
                self.discard(ev.maker_order_id)
            if ev.taker_remaining == "0":
                self.discard(ev.taker_order_id)
        elif isinstance(ev, Accepted):
            if ev.order_type == "limit" and ev.tif == "gtc":
                self.add(ev.order_id, ev.user, ev.market)
        elif isinstance(ev, Cancelled):
            self.discard(ev.order_id)


class Step(Protocol):
    """What :func:`step_ladder` and the ``--json`` step list need of a step result."""

    kept_up: bool

    @property
    def driver_limited(self) -> bool: ...


S = TypeVar("S", bound=Step)


@dataclass(frozen=True)
class LatencyTarget:
    """p99 below ``p99_ms_max`` at ``rate`` offered per second (a step at that rate must keep up)."""

    rate: int
    p99_ms_max: float

    def check(self, steps: Sequence[Any]) -> dict[str, Any]:
        """This target against the steps: measured (a non-probe step ran at the rate), its p99, met."""
        step = next((s for s in steps if s.offered_per_s == self.rate and not getattr(s, "probe", False)), None)
        p99 = step.p99_ms if step is not None else None
        return {
            "at_per_s": self.rate,
            "p99_ms_max": self.p99_ms_max,
            "measured": step is not None,
            "kept_up": step is not None and step.kept_up,
            "p99_ms": p99,
            "met": step is not None and step.kept_up and p99 is not None and p99 < self.p99_ms_max,
        }


def latency_verdicts(checks: Sequence[dict[str, Any]], unit: str) -> str:
    """``p99 < 5 ms at 2,000 orders/s PASS (3.1 ms); ...`` for the verdict line; an unmeasured one says how."""
    parts = []
    for c in checks:
        head = f"p99 < {c['p99_ms_max']:g} ms at {c['at_per_s']:,} {unit}"
        if not c["measured"]:
            parts.append(f"{head} [yellow]not measured[/] (add {c['at_per_s']:,} to --rates)")
        elif not c["kept_up"]:
            parts.append(f"{head} {pass_fail(False)} (did not keep up)")
        else:
            parts.append(f"{head} {pass_fail(c['met'])} ({fmt_ms(c['p99_ms'])} ms)")
    return "; ".join(parts)


class LadderResult:
    """The headline figures of a result made of rate steps (a dataclass with ``steps`` and ``baseline``).

    A subclass says which figure of a step is its delivered rate (:meth:`delivered`).
    """

    steps: Sequence[Any]
    baseline: Any
    """Has ``msgs_per_s``: the raw rate the delivered one is compared with."""

    @staticmethod
    def delivered(step: Any) -> float:
        raise NotImplementedError

    @property
    def sustained(self) -> float:
        """Highest delivered rate among the steps that kept up (0 if none did)."""
        return max((self.delivered(s) for s in self.steps if s.kept_up), default=0.0)

    @property
    def max_delivered(self) -> float:
        return max((self.delivered(s) for s in self.steps), default=0.0)

    @property
    def ratio(self) -> float:
        """Sustained over the baseline."""
        return self.sustained / self.baseline.msgs_per_s if self.baseline.msgs_per_s else 0.0


def steps_doc(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """Each step (a dataclass) as a dict, with ``driver_limited`` added."""
    docs = []
    for s in steps:
        doc = asdict(s)  # type: ignore[call-overload]
        doc["driver_limited"] = s.driver_limited
        docs.append(doc)
    return docs


def machine_doc(**extra: Any) -> dict[str, Any]:
    """The ``machine`` part of a ``--json`` document: figures mean little without it."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), **extra}


# --- child processes ---------------------------------------------------------------------


class Processes:
    """Child processes of one benchmark, stopped in reverse start order, always."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(
        self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``cwd``, its output in ``NAME.log`` (``env=None``: this process's)."""
        logf = (self.log_dir / f"{name}.log").open("ab")
        try:
            # Own session: a Ctrl-C reaches the benchmark, which stops them in order; and they die with it.
            proc = launch.start(argv, log=logf, env=env, cwd=cwd, new_session=True, die_with_parent=True)
        except OSError as exc:
            logf.close()
            raise BenchError(f"cannot start {name}: {exc}") from None
        self.procs.append((name, proc, logf))
        return proc

    def log_tail(self, name: str, lines: int = 5) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def check_alive(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            tail = self.log_tail(name)
            raise StartupError(f"{name} exited with {proc.returncode} during the benchmark", tail or None)

    @staticmethod
    def _stop_one(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        while self.procs:
            _, proc, logf = self.procs.pop()
            try:
                self._stop_one(proc)
            finally:
                logf.close()


def clean_env() -> dict[str, str]:
    """This process's environment without ``STOCKCTL_*``: a child must not see the user's instance."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}


async def connect_nats(url: str, name: str, pending_size: int | None = 64 * 1024 * 1024) -> NATS:
    """A connection that never reconnects (the servers are ours) and logs nothing."""
    import nats

    async def quiet(_: Exception) -> None:
        pass

    extra = {} if pending_size is None else {"pending_size": pending_size}
    try:
        return await nats.connect(
            **nats_options(url), name=name, allow_reconnect=False, connect_timeout=5, error_cb=quiet, **extra
        )
    except Exception as exc:
        raise BenchError(f"cannot connect to the benchmark's nats-server at {mask_url(url)}: {exc}") from None


async def close_nats(nc: NATS) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), 5)


async def register_user(http: httpx.AsyncClient, email: str, who: str) -> str:
    """Register ``email`` through the gateway (``who`` names it in errors); its access token."""
    import httpx

    body = {"email": email, "password": "bench-" + secrets.token_urlsafe(18)}
    try:
        resp = await http.post("/auth/register", json=body)
    except httpx.HTTPError as exc:
        raise BenchError(f"cannot register {who}: {exc.__class__.__name__}: {exc}") from None
    if resp.status_code != 201:
        raise BenchError(f"registering {who}: HTTP {resp.status_code}: {resp.text[:200]}")
    return resp.json()["access_token"]


# --- the private stack -------------------------------------------------------------------


class Timed(Protocol):
    """A benchmark result: :func:`run_private` sets how long the whole run took."""

    elapsed_s: float


R = TypeVar("R", bound=Timed)


class PrivateStack(Generic[R]):
    """Servers and daemons of one benchmark in its own directory; a subclass's :meth:`run` measures.

    Every process is started through :attr:`procs` (so :func:`run_private` stops it) and,
    unless it is a throwaway, named in :attr:`pids` (so :meth:`meter_pids` meters it).
    """

    def __init__(self, home: Path, progress: ProgressFn, host: str = LOCALHOST) -> None:
        self.home = home
        self.progress = progress
        self.host = host
        self.procs = Processes(home)
        self.pids: dict[str, int] = {}
        """Every process started, by name, in start order."""
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}

    async def run(self) -> R:
        raise NotImplementedError

    def free_ports(self, count: int) -> list[int]:
        """``count`` distinct free ports, ascending."""
        ports: set[int] = set()
        while len(ports) < count:
            ports.add(infra.free_port(self.host))
        return sorted(ports)

    def service_ports(self) -> dict[str, int]:
        """Free ports for the gateway, WebSocket and auth listeners, as :class:`Settings` fields."""
        gateway_port, ws_port, auth_port = self.free_ports(3)
        return {"gateway_port": gateway_port, "ws_port": ws_port, "auth_port": auth_port}

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start a child in the benchmark's directory, its output in ``NAME.log``."""
        proc = self.procs.start(name, argv, env=env, cwd=self.home)
        self.pids[name] = proc.pid
        return proc

    def start_servers(self) -> tuple[str, str]:
        """A nats-server and a valkey-server on free ports, once both answer: their URLs.

        They require credentials as ``stockctl up``'s do (kept in the benchmark's own
        ``secrets/``); the URLs carry them, so never print one unmasked.
        """
        host = self.host
        nats_port, monitor_port, redis_port = self.free_ports(3)
        (self.home / "nats").mkdir()
        (self.home / "redis").mkdir()
        secrets_dir = self.home / "secrets"
        creds = servercreds.load_credentials(secrets_dir)
        self.progress("starting nats-server and valkey-server")
        nats_conf = creds.write_nats_config(secrets_dir / "nats.conf")
        nats_proc = self.procs.start(
            "nats", infra.nats_argv(host, nats_port, monitor_port, self.home / "nats", nats_conf), cwd=self.home
        )
        redis_conf = creds.write_redis_config(secrets_dir / "valkey.conf")
        redis_proc = self.procs.start(
            "redis", infra.redis_argv(host, redis_port, self.home / "redis", redis_conf), cwd=self.home
        )
        self.pids.update({"nats": nats_proc.pid, "valkey": redis_proc.pid})
        checks = {
            "nats": (nats_proc, lambda: infra.nats_ready(host, monitor_port)),
            "redis": (redis_proc, lambda: infra.redis_ready(host, redis_port, creds.redis_password)),
        }
        waiting = set(checks)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while waiting:
            for name in sorted(waiting):
                proc, ready = checks[name]
                if proc.poll() is not None:
                    tail = self.procs.log_tail(name) or None
                    raise StartupError(f"{name} server exited with {proc.returncode} at start", tail)
                if ready():
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                late = ", ".join(sorted(waiting))
                raise StartupError(f"{late} not ready within {SERVER_START_TIMEOUT:g}s", "see its log for the cause")
            if waiting:
                time.sleep(0.05)
        return creds.nats_url(host, nats_port), creds.redis_url(host, redis_port)

    def settings(self, nats_url: str | None, redis_url: str | None, **fields: Any) -> Settings:
        """The daemons' settings here (quiet logs, no replay); ``fields`` add to them; a None URL: the embedded one."""
        try:
            return Settings(
                home=self.home,
                host=self.host,
                nats_url=nats_url,
                redis_url=redis_url,
                log_level="WARNING",
                replay_csv=None,
                only=[],
                register_max_per_ip=1_000_000,  # benches register many users from one address
                **fields,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"])
            raise UsageError(f"bad {name}: {err['msg']}", f"check STOCKCTL_{name.upper()}") from None

    async def start_daemons(
        self, settings: Settings, daemons: Sequence[str], timeout: float, announce: str | None = None, envs: Envs = None
    ) -> None:
        """Start ``daemons`` (a name's environment from ``envs`` if there) and wait until each says it is ready."""
        env = launch.child_env(settings, clean_env())
        started = {name: self.spawn(name, launch.daemon_argv(name), (envs or {}).get(name, env)) for name in daemons}
        self.daemons.update(started)
        self.progress(announce or f"starting the {', '.join(daemons)} daemon{'s' if len(daemons) > 1 else ''}")
        waiting = set(started)
        deadline = time.monotonic() + timeout
        while waiting:
            for name in sorted(waiting):
                proc = started[name]
                if proc.poll() is not None:
                    tail = self.procs.log_tail(name) or None
                    raise StartupError(f"the {name} daemon exited with {proc.returncode} at start", tail)
                if launch.daemon_ready(settings, name, proc.pid):
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                late = ", ".join(sorted(waiting))
                tail = " / ".join(self.procs.log_tail(n, 2) for n in sorted(waiting)) or None
                raise StartupError(f"{late} not ready within {timeout:g}s", tail)
            if waiting:
                await asyncio.sleep(0.05)

    def check_alive(self, *names: str) -> None:
        """Raise if one of the named daemons (all of them by default) has exited."""
        for name in names or tuple(self.daemons):
            self.procs.check_alive(name, self.daemons[name])

    def meter_pids(self) -> dict[str, int]:
        """Every process started, and this one as ``bench``: what a :class:`CpuMeter` watches."""
        return {**self.pids, "bench": os.getpid()}


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so a terminated benchmark still stops its children."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_private(
    prefix: str,
    make: Callable[[Path], PrivateStack[R]],
    progress: ProgressFn,
    stopping: str,
    stop_on_sigterm: bool = True,
) -> R:
    """Run ``make(temp dir).run()`` and stop every process it started; ``stopping`` is said meanwhile.

    ``stop_on_sigterm``: a SIGTERM interrupts the run like Ctrl-C, so the children are
    stopped in order and the directory removed (else they die with the parent, by signal).
    """
    import nats.errors

    t0 = time.monotonic()
    guard = sigterm_interrupts() if stop_on_sigterm else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, guard:
        stack = make(Path(tmp))
        try:
            result = asyncio.run(stack.run())
        except (OSError, nats.errors.Error) as exc:  # nats.js.errors.Error is a nats.errors.Error
            raise BenchError(f"benchmark failed: {exc.__class__.__name__}: {exc}") from None
        finally:
            progress(stopping)
            stack.procs.stop_all()
    result.elapsed_s = time.monotonic() - t0
    return result


# --- offering and draining ---------------------------------------------------------------


async def paced(
    rate: float, seconds: float, send: Callable[[], Awaitable[None]], report: Callable[[float], None]
) -> tuple[int, float]:
    """Call ``send`` ``rate`` times a second for ``seconds``, open loop; (calls made, elapsed seconds).

    ``report(elapsed)`` is called every :data:`REPORT_EVERY_S` meanwhile.
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    end = t0 + seconds
    total = int(rate * seconds)
    burst = max(1, int(rate / 500))  # at most 2 ms worth at once, then yield and look at the clock
    sent = 0
    next_report = t0
    while True:
        now = loop.time()
        if now >= end or sent >= total:
            break
        due = min(total, int((now - t0) * rate) + 1, sent + burst) - sent
        for _ in range(due):
            await send()
        sent += due
        if now >= next_report:
            report(now - t0)
            next_report = now + REPORT_EVERY_S
        delay = t0 + sent / rate - loop.time()
        await asyncio.sleep(delay if delay > 0 else 0)
    return sent, loop.time() - t0


async def wait_until(
    done: Callable[[], bool], timeout: float, report: Callable[[], None], poll: float, since: float | None = None
) -> tuple[bool, float]:
    """Poll ``done`` until it holds or ``timeout`` has passed ``since`` (loop time, default now); (done, seconds).

    ``report()`` is called every :data:`REPORT_EVERY_S` meanwhile.
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time() if since is None else since
    next_report = t0
    while not done():
        now = loop.time()
        if now - t0 >= timeout:
            return False, now - t0
        if now >= next_report:
            report()
            next_report = now + REPORT_EVERY_S
        await asyncio.sleep(poll)
    return True, loop.time() - t0


async def step_ladder(
    rates: Sequence[int], unit: str, run_step: Callable[[int, str], Awaitable[S]]
) -> tuple[list[S], list[int]]:
    """``run_step(rate, label)`` for each rate until one falls behind; (the steps run, the rates skipped)."""
    steps: list[S] = []
    n = len(rates)
    for i, rate in enumerate(rates, 1):
        step = await run_step(rate, f"step {i}/{n}: {rate:,} {unit}/s")
        steps.append(step)
        if not step.kept_up:
            # Higher rates can only fall further behind; a backlog left behind would spoil them anyway.
            return steps, list(rates[i:])
    return steps, []


# --- rendering ---------------------------------------------------------------------------


def pass_fail(flag: bool) -> str:
    return "[bold green]PASS[/]" if flag else "[bold red]FAIL[/]"


def fmt_num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def fmt_ms(value: float | None) -> str:
    """Milliseconds with about three significant digits."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def table(title: str, show_header: bool = True) -> Table:
    """An empty table in the benchmarks' style."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=show_header)


def measure_table(
    title: str, columns: tuple[str, str, str] = ("measure", "value", ""), show_header: bool = True
) -> Table:
    """A what / value / note table (the note dim)."""
    t = table(title, show_header)
    t.add_column(columns[0])
    t.add_column(columns[1], justify="right")
    t.add_column(columns[2], style="dim")
    return t


def figures_table(title: str, columns: Sequence[str]) -> Table:
    """A table of right-aligned figures."""
    t = table(title)
    for col in columns:
        t.add_column(col, justify="right")
    return t


def steps_table(title: str, columns: Sequence[str]) -> Table:
    """One row per offered rate: figures, then whether it kept up (:func:`kept_up_cell`)."""
    t = figures_table(title, columns)
    t.add_column("kept up")
    return t


def cpu_table(columns: Sequence[str]) -> Table:
    return figures_table("CPU cores used per rate", columns)


def kept_up_cell(kept_up: bool, drained: bool, driver_limited: bool, errors: int = 0) -> str:
    """``yes``, else why not: the backlog never drained, commands failed, the driver could not offer the rate."""
    if kept_up:
        return "[green]yes[/]"
    if not drained:
        return "[red]no, stuck[/]"
    if errors:
        return f"[red]no, {errors:,} failed[/]"
    if driver_limited:
        return "[red]no, driver[/]"
    return "[red]no[/]"


def not_run_note(rates: Sequence[int], unit: str) -> str:
    skipped = ", ".join(f"{r:,}" for r in rates)
    return f"[dim]not run: {skipped} {unit}/s (a lower rate already fell behind)[/]"


def best_of(rounds: Sequence[float]) -> str:
    """``best of a, b, c; `` when there were several rounds, else nothing."""
    return f"best of {', '.join(f'{r:,.0f}' for r in rounds)}; " if len(rounds) > 1 else ""
