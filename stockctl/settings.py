"""The one settings object shared by the CLI, the supervisor, the daemons and the TUI.

Every field reads from an environment variable ``STOCKCTL_<FIELD>`` (for example
``STOCKCTL_NATS_PORT``) and from the config file (:func:`config_path`: TOML, top-level keys
are field names, the ``[tui]`` table holds ``theme`` and ``keys``). Precedence: CLI flags
(init arguments) > environment > config file > defaults. The supervisor hands its effective
settings to the daemons through the variables (:meth:`Settings.to_env`), so a daemon started
by hand on another host is configured exactly the same way.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from stockctl.components import DAEMONS, SERVERS
from stockctl.config_file import (  # noqa: F401  (re-exported: callers import them from here)
    CONFIG_ENV,
    TUI_TABLE,
    ConfigFileSource,
    config_path,
    flatten_config,
    unknown_setting,
)
from stockctl.errors import StockctlError
from stockctl.wire.masking import mask_url
from stockctl.wire.redis_urls import parse_redis_url
from stockctl.wire.symbols import parse_symbol

if TYPE_CHECKING:
    from stockctl.exchange.groups import MarketGroups
    from stockctl.servercreds import ServerCredentials

ENV_PREFIX = "STOCKCTL_"
CLUSTER_NATS_NODES = 3
CLUSTER_VALKEY_NODES = 6  # 3 primaries, each with a replica

_DURATION_RE = re.compile(r"(\d{1,9})([smhdw])", re.ASCII)
_UNIT_NS = {
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000,
}


def parse_duration(text: str) -> int:
    """``"30d"`` -> nanoseconds; ``"0"`` -> 0. Raises ValueError naming the accepted forms."""
    text = text.strip()
    if text == "0":
        return 0
    m = _DURATION_RE.fullmatch(text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"bad duration {text!r}: use a number and s, m, h, d or w (90s, 2h, 30d), or 0")
    return int(m.group(1)) * _UNIT_NS[m.group(2)]


SECRET_FIELDS = ("nats_url", "redis_url", "history_url")
"""Fields whose value may hold a password: shown and logged through :func:`mask_url` only."""


def default_home() -> Path:
    """The per-user state dir: ``$XDG_STATE_HOME/stockctl`` or ``~/.local/state/stockctl``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "stockctl"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Typed configuration for every stockctl component (env prefix ``STOCKCTL_``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        use_attribute_docstrings=True,
        extra="ignore",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home)
    """State dir: pid files, logs, server data, secrets. One running instance per home."""

    host: str = "127.0.0.1"
    """Address every listener binds to. Loopback unless you mean to expose it."""

    nats_url: str | None = None
    """Use an existing NATS server (JetStream enabled) instead of starting one; credentials go
    in the URL (``nats://user:pass@host:4222``, ``tls://...``)."""

    redis_url: str | None = None
    """Use an existing Redis/Valkey server instead of starting one; credentials go in the URL
    (``redis://:pass@host:6379/0``, ``redis://user:pass@...``, ``rediss://`` for TLS), or a
    Redis/Valkey Cluster by some of its nodes (``redis+cluster://:pass@h1:6379,h2:6379``)."""

    nats_port: int = Field(14222, ge=1, le=65535)
    """Port of the embedded nats-server."""

    nats_monitor_port: int = Field(18222, ge=1, le=65535)
    """HTTP monitoring port of the embedded nats-server (health, varz)."""

    redis_port: int = Field(16379, ge=1, le=65535)
    """Port of the embedded valkey/redis server."""

    cluster: bool = False
    """Run a cluster on this machine (``up --cluster``): 3 nats-server nodes at R3 from
    ``nats_port`` up, a Valkey Cluster of 3 primaries and 3 replicas from ``redis_port`` up,
    and two of each daemon that scales (see :mod:`stockctl.instance.cluster`)."""

    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["AAPL", "GOOGL", "AMZN", "MSFT", "TSLA"])
    """Simulated ticker symbols (comma separated in the environment)."""

    rate: float = Field(1.0, gt=0, le=100_000)
    """Simulated ticks per second, per symbol."""

    seed: int | None = None
    """Seed for a reproducible simulated price stream."""

    sim_speed: float = Field(60.0, gt=0, le=1e7)
    """Simulated market seconds per real second (60: one real second moves prices like a minute)."""

    replay_csv: Path | None = None
    """Replay this CSV (timestamp,symbol,price[,volume]) instead of simulating prices."""

    replay_speed: float = Field(1.0, ge=0)
    """Replay speed factor: 1 is real time, 10 ten times faster, 0 as fast as possible."""

    publish_limit: int | None = Field(None, ge=1)
    """Stop publishing after this many ticks per symbol (tests and benchmarks)."""

    history_limit: int = Field(1000, ge=1, le=1_000_000)
    """Price points kept per symbol in Redis history."""

    history_url: str | None = None
    """PostgreSQL/TimescaleDB URL of the history store (``postgresql://user:pass@host/db``);
    unset: SQLite in ``<home>/data/history.sqlite3``."""

    history_retention: str = "30d"
    """How long the history store keeps ticks and candles (90m, 12h, 30d, 2w); ``0`` keeps forever."""

    history_batch: int = Field(5000, ge=1, le=100_000)
    """Most ticks the history writer stores in one transaction."""

    history_prune_interval_s: float = Field(60.0, gt=0, le=86_400)
    """How often the history writer deletes what is older than the retention."""

    sma_fast: int = Field(20, ge=1, le=10_000)
    """Fast simple-moving-average window, in ticks."""

    sma_slow: int = Field(50, ge=2, le=10_000)
    """Slow simple-moving-average window, in ticks."""

    candle_intervals: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["1s", "1m"])
    """OHLCV candle intervals kept by the processor (comma separated: 1s, 5s, 1m, 5m, 1h...)."""

    candle_limit: int = Field(500, ge=1, le=100_000)
    """Candles kept per symbol and interval."""

    signal_limit: int = Field(500, ge=1, le=100_000)
    """SMA crossover signals kept per symbol."""

    tick_max_age_s: int = Field(6 * 3600, ge=60)
    """Ticks older than this leave the JetStream tick stream."""

    tick_max_bytes: int = Field(512 * 1024 * 1024, ge=1024 * 1024)
    """Size bound of the JetStream tick stream."""

    stream_replicas: int = Field(1, ge=1, le=5)
    """Replicas of every JetStream stream (3 on a 3-node cluster); a daemon never lowers them."""

    nats_ping_interval_s: float = Field(2.0, gt=0, le=600)
    """How often a daemon pings its NATS server. Two pings unanswered drop the connection and it
    moves to another server of the list, so a frozen node (not dead: its socket stays open) is
    left within three intervals. nats-py's default of 120 s held every client of a paused node."""

    processor_batch: int = Field(512, ge=1, le=100_000)
    """Most ticks the processor writes to Redis in one pipelined transaction."""

    partitions: int = Field(8, ge=1, le=256)
    """Partitions the symbols hash into (part of the tick subject): the unit processors share.
    Every publisher, processor and matching daemon of an instance must use the same number."""

    processor_lease_s: float = Field(5.0, ge=0.5, le=300)
    """How long a processor's hold on a partition lasts unless renewed: a processor that dies or
    stalls loses its partitions to the others after this long."""

    matching_lease_s: float = Field(3.0, ge=0.5, le=300)
    """How long the active matching daemon's lease lasts unless renewed: a standby takes over
    after the active one has died or stalled this long."""

    market_groups: str = ""
    """Split the markets into groups, each led by its own active matching daemon:
    ``NAME=MARKET,MARKET;NAME=...`` (``inr=TATA_INR,JIO_INR;us=AAPL_USD``). Markets that share
    an asset must share a group. Empty: one group, ``main``. Fixed once the exchange has history."""

    matching_term_renew_s: float = Field(86_400.0, ge=1, le=864_000)
    """How often the active matching daemon writes its term again, so that its fence never
    ages out of ``EX_EVENTS`` (kept 30 days)."""

    gateway_port: int = Field(8700, ge=1, le=65535)
    """HTTP + WebSocket port of the gateway (the port clients use)."""

    ws_port: int = Field(8702, ge=1, le=65535)
    """WebSocket port of the gateway (``ws://HOST:PORT/ws``)."""

    public_market_data: bool = False
    """Serve market-data reads (REST) and market-data channels without a token, as exchanges
    serve public market data; seeds 001-003's clients need it. The embedded NATS then also lets
    clients without credentials subscribe to ``stock_prices`` (seed 000's), and only that.
    Trading and private data (orders, fills, balances, alerts) always need one."""

    auth_port: int = Field(8701, ge=1, le=65535)
    """HTTP port of the auth daemon."""

    auth_url: str | None = None
    """Where the auth daemon is, if not on this host (the gateway fetches its JWKS there)."""

    access_token_ttl_s: int = Field(300, ge=10, le=86_400)
    """Lifetime of an access token (JWT). A disabled user is locked out at once all the same: the
    gateway checks the disabled set on every request and closes open sockets."""

    refresh_token_ttl_s: int = Field(7 * 86_400, ge=60, le=365 * 86_400)
    """Lifetime of a refresh token; each use rotates it."""

    signing_key_reload_s: float = Field(10.0, gt=0, le=3600)
    """How often each auth daemon re-reads the signing keys from Redis: it signs with a key that
    ``stockctl auth rotate-key`` made within this long."""

    signing_key_grace_s: float = Field(60.0, ge=0, le=86_400)
    """Margin a replaced signing key stays in JWKS past the last expiry of a token it signed."""

    jwks_refresh_s: float = Field(60.0, gt=0, le=86_400)
    """How often the gateway re-fetches the auth daemon's JWKS (and at once, at most every
    second, on a token of an unknown key): a retired key is refused within this long."""

    login_max_failures: int = Field(5, ge=1, le=1000)
    """Failed logins allowed per email within ``login_window_s`` before 429."""

    login_max_failures_per_ip: int = Field(30, ge=1, le=100_000)
    """Failed logins allowed per client address within ``login_window_s`` before 429."""

    login_window_s: int = Field(300, ge=1, le=86_400)
    """Window of the login throttles."""

    register_max_per_ip: int = Field(20, ge=1, le=1_000_000)
    """Registrations allowed per client address within ``register_window_s`` before 429 (every
    new account gets demo money)."""

    register_window_s: int = Field(3600, ge=1, le=7 * 86_400)
    """Window of the registration throttle."""

    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses or networks (``10.0.0.5,192.168.0.0/24``) of reverse proxies in front of the
    gateway or auth whose ``X-Forwarded-For`` is believed. Empty: none; the socket peer counts."""

    rest_rate_limit: int = Field(20_000, ge=0, le=10_000_000)
    """REST requests each user (or, for anonymous market-data reads, each address) may make per
    ``rest_rate_window_s`` on one gateway; past it 429 with ``Retry-After``. 0: no limit."""

    rest_rate_window_s: float = Field(10.0, gt=0, le=3600)
    """Window of the REST rate limit (fixed windows)."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Browser origins (``https://app.example``) allowed to call the REST API cross-origin.
    Empty: CORS off, no ``Access-Control-*`` headers at all."""

    disabled_check_s: float = Field(5.0, gt=0, le=3600)
    """How often each gateway re-reads the disabled accounts, in case an announcement was lost."""

    ws_queue_size: int = Field(512, ge=8, le=100_000)
    """Outgoing messages buffered per WebSocket client before quotes are conflated."""

    ws_max_message_bytes: int = Field(16 * 1024, ge=256, le=1024 * 1024)
    """Largest message a WebSocket client may send."""

    ws_max_messages_per_s: float = Field(50.0, gt=0, le=10_000)
    """Messages a WebSocket client may send per second (burst: twice that)."""

    ws_ping_interval_s: float = Field(20.0, gt=0, le=3600)
    """Server heartbeat period; a client that misses two is closed."""

    markets_file: Path | None = None
    """JSON list of exchange markets (symbol, base, quote, tick_size, lot_size, min_qty, max_qty,
    max_price); default TATA_INR and JIO_INR."""

    demo_balances: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: {"INR": "1000000", "TATA": "1000", "JIO": "1000"}
    )
    """What a new account is credited with, per asset (``INR=1000000,TATA=1000`` in the environment)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the daemons."""

    log_format: Literal["text", "json"] = "text"
    """Daemon log lines: ``text`` for people, ``json`` (one object per line, with the request
    and order ids a line concerns) for log shippers."""

    metrics_port: int = Field(8710, ge=0, le=65_535)
    """First port of the daemons' health and Prometheus listeners (``/healthz``, ``/readyz``,
    ``/metrics``): each daemon takes this plus its place in the daemon list; a busy port falls
    back to any free one; 0 means any free port. ``stockctl status`` shows where each is."""

    stop_timeout: float = Field(10.0, gt=0, le=300)
    """Seconds a component gets to stop after SIGTERM before it is killed."""

    start_timeout: float = Field(60.0, gt=0, le=600)
    """Seconds ``stockctl up`` waits for every component to become ready."""

    liquidity: bool = True
    """Run the simulated market makers (``stockctl up --no-liquidity`` for a quiet book)."""

    alerts_per_user: int = Field(100, ge=1, le=10_000)
    """Active price alerts a user may have at once."""

    web_max_sessions: int = Field(2, ge=1, le=100)
    """Browser sessions ``stockctl tui --web`` serves at once; one more is refused."""

    feeds: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Live exchange feeds, ``binance:BTCUSDT,ETHUSDT@aggTrade`` or ``coinbase:BTC-USD`` (``;`` between
    feeds in the environment); run by the ``feeds`` daemon."""

    simulate: bool | None = None
    """Run the price simulator: by default on, unless feeds are given (``up --simulate`` keeps it
    beside the feeds)."""

    feed_url_binance: str = "wss://stream.binance.com:9443/stream"
    """Binance combined-stream endpoint (``?streams=...`` is added)."""

    feed_url_coinbase: str = "wss://ws-feed.exchange.coinbase.com"
    """Coinbase Exchange WebSocket feed."""

    feed_silence_s: float = Field(10.0, gt=0, le=3600)
    """A Coinbase connection with no frame (heartbeats come every second) for this long is made again."""

    feed_ping_interval_s: float = Field(20.0, gt=0, le=3600)
    """Our keepalive pings to the exchange; no pong within as long again closes and reconnects."""

    feed_backoff_min_s: float = Field(0.5, gt=0, le=60)
    """First reconnect delay of a feed (jittered, doubling)."""

    feed_backoff_max_s: float = Field(30.0, gt=0, le=3600)
    """Longest reconnect delay of a feed."""

    only: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Run only these components (servers and/or daemons); empty means all."""

    tui_theme: str = Field("textual-dark", min_length=1, max_length=64)
    """The TUI's theme, a name in Textual's theme registry (``[tui] theme`` in the config file)."""

    tui_keys: dict[str, str] = Field(default_factory=dict)
    """TUI key bindings, action -> key (``[tui.keys]`` in the config file, JSON in the environment):
    ``{"quit": "ctrl+q"}``. Empty keeps the TUI's own."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags > environment > config file > defaults (no dotenv, no secrets dir)."""
        return init_settings, env_settings, ConfigFileSource(settings_cls)

    # --- validation -----------------------------------------------------------------

    @field_validator("symbols", "candle_intervals", "only", "trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("tui_keys", mode="before")
    @classmethod
    def _keys_json(cls, value: Any) -> Any:
        if isinstance(value, str):  # `config set tui_keys '{"quit": "ctrl+q"}'`
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError('bad key bindings: give a JSON object, e.g. {"quit": "ctrl+q"}') from None
        return value

    @field_validator("tui_keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for action, key in value.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_.]{0,63}", action) or not key.strip() or " " in key:
                raise ValueError(f"bad key binding {action!r} = {key!r}: use action = key, e.g. quit = ctrl+q")
        return value

    @field_validator("feeds", mode="before")
    @classmethod
    def _feed_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        return value

    @field_validator("feeds")
    @classmethod
    def _feeds(cls, value: list[str]) -> list[str]:
        from stockctl.wire.feeds import parse_feed

        seen: dict[str, str] = {}
        out = []
        for text in value:
            try:
                spec = parse_feed(text)
            except StockctlError as exc:
                raise ValueError(str(exc)) from None
            for sym in spec.symbols:
                if sym in seen:
                    raise ValueError(f"{sym} is fed twice ({seen[sym]} and {spec.exchange}); feed each symbol once")
                seen[sym] = spec.exchange
            out.append(str(spec))
        return out

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value:
            parse_redis_url(value)  # a ValueError says what is wrong with it
        return value

    @field_validator("feed_url_binance", "feed_url_coinbase")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("wss://", "ws://")):
            raise ValueError(f"bad feed URL {value[:80]!r}: use wss://HOST[:PORT]/PATH (ws:// for a local test server)")
        return value

    @field_validator("demo_balances", mode="before")
    @classmethod
    def _balances(cls, value: Any) -> Any:
        if isinstance(value, str):
            out = {}
            for part in _split_csv(value):
                asset, sep, amount = part.partition("=")
                if not sep:
                    raise ValueError(f"bad balance {part!r}: use ASSET=AMOUNT, e.g. INR=1000000")
                out[asset.strip().upper()] = amount.strip()
            return out
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        out = []
        for text in value:
            try:
                sym = parse_symbol(text)
            except StockctlError as exc:
                raise ValueError(str(exc)) from None
            if sym not in out:
                out.append(sym)
        if not out:
            raise ValueError("at least one symbol is needed")
        return out

    @field_validator("candle_intervals")
    @classmethod
    def _intervals(cls, value: list[str]) -> list[str]:
        from stockctl.marketdata.candles import parse_interval  # local: avoid an import cycle

        for iv in value:
            parse_interval(iv)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        out = []
        for net in value:
            try:
                out.append(str(ipaddress.ip_network(net.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    f"bad trusted proxy {net!r}: use an IP address or network, e.g. 10.0.0.5 or 10.0.0.0/24"
                ) from None
        return out

    @field_validator("history_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @field_validator("only")
    @classmethod
    def _only(cls, value: list[str]) -> list[str]:
        known = (*SERVERS, *DAEMONS)
        for name in value:
            if name not in known:
                raise ValueError(f"unknown component {name!r}; known: {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _feeds_beside_simulation(self) -> Settings:
        if self.runs_simulator and self.feeds:
            from stockctl.wire.feeds import parse_feed

            fed = {sym for text in self.feeds for sym in parse_feed(text).symbols}
            both = sorted(fed & set(self.symbols))
            if both:
                raise ValueError(
                    f"{', '.join(both)} would be both simulated and fed live; drop it from --symbols/STOCKCTL_SYMBOLS"
                )
        return self

    @model_validator(mode="after")
    def _windows(self) -> Settings:
        if self.sma_fast >= self.sma_slow:
            raise ValueError(f"sma_fast ({self.sma_fast}) must be below sma_slow ({self.sma_slow})")
        if self.history_limit < self.sma_slow:
            raise ValueError(
                f"history_limit ({self.history_limit}) must be at least sma_slow ({self.sma_slow}):"
                " the processor rebuilds its SMA windows from history"
            )
        return self

    # --- derived ----------------------------------------------------------------------

    def __repr_args__(self):  # secrets and credentials never reach logs
        for key, value in super().__repr_args__():
            if key in SECRET_FIELDS:
                value = mask_url(value)
            yield key, value

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def server_credentials(self) -> ServerCredentials:
        """The embedded servers' credentials of this state dir (generated on first use)."""
        from stockctl.servercreds import load_credentials  # local: infra is not needed to read settings

        return load_credentials(self.secrets_dir)

    def groups(self) -> MarketGroups:
        """The market groups over the configured markets. Raises ValueError (GroupsError, or a bad
        markets file's OSError/ValueError) with a one-line reason."""
        from stockctl.exchange.groups import market_groups  # local: the engine is not needed to read settings
        from stockctl.wire.exchange import load_markets

        specs = load_markets(str(self.markets_file) if self.markets_file else None)
        return market_groups(self.market_groups, specs)

    @property
    def history_retention_ns(self) -> int:
        return parse_duration(self.history_retention)

    @property
    def nats_ports(self) -> list[int]:
        """Client ports of the embedded nats-server nodes (three under ``cluster``)."""
        return [self.nats_port + i for i in range(CLUSTER_NATS_NODES if self.cluster else 1)]

    @property
    def redis_ports(self) -> list[int]:
        """Ports of the embedded valkey-server nodes (six under ``cluster``)."""
        return [self.redis_port + i for i in range(CLUSTER_VALKEY_NODES if self.cluster else 1)]

    @property
    def effective_nats_url(self) -> str:
        """The NATS URL to connect to, credentials included: never log it, log :func:`mask_url` of it."""
        if self.nats_url:
            return self.nats_url
        creds = self.server_credentials()
        return ",".join(creds.nats_url(self.host, port) for port in self.nats_ports)

    @property
    def effective_redis_url(self) -> str:
        """The Redis URL to connect to, credentials included: never log it, log :func:`mask_url` of it."""
        if self.redis_url:
            return self.redis_url
        if self.cluster:
            return self.server_credentials().redis_cluster_url(self.host, self.redis_ports)
        return self.server_credentials().redis_url(self.host, self.redis_port)

    @property
    def effective_auth_url(self) -> str:
        return self.auth_url or f"http://{self.host}:{self.auth_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/ws"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def runs_simulator(self) -> bool:
        """Whether the publisher simulates: ``simulate`` if set, else only when no feed runs."""
        if self.replay_csv is not None:
            return False
        return self.simulate if self.simulate is not None else not self.feeds

    def components(self) -> list[str]:
        """Servers and daemons this instance runs, in start order."""
        names: list[str] = []
        if not self.nats_url:
            names.append("nats")
        if not self.redis_url:
            names.append("redis")
        skip = {"liquidity"} if not self.liquidity else set()
        if not self.feeds:
            skip.add("feeds")
        if not self.runs_simulator and self.replay_csv is None:
            skip.add("publisher")  # live feeds instead of the simulator
        names.extend(d for d in DAEMONS if d not in skip)
        if self.only:
            names = [n for n in names if n in self.only]
        return names

    def to_env(self) -> dict[str, str]:
        """The settings as ``STOCKCTL_*`` variables, for child processes."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if name == "tui_keys":  # bindings may hold commas ("q,ctrl+c"): JSON, as the source decodes it
                value = json.dumps(value)
            elif isinstance(value, list):
                value = (";" if name == "feeds" else ",").join(str(v) for v in value)
            elif isinstance(value, dict):
                value = ",".join(f"{k}={v}" for k, v in value.items())
            env[ENV_PREFIX + name.upper()] = str(value)
        return env

    def ensure_dirs(self) -> None:
        """Create the state dir tree, private to this user."""
        for path in (self.home, self.run_dir, self.log_dir, self.data_dir, self.secrets_dir):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the config file, with CLI overrides (``None`` means not given)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def setting_origins(**overrides: Any) -> dict[str, str]:
    """Where each field's effective value comes from: ``flag``, ``env``, ``file`` or ``default``."""
    given = {k for k, v in overrides.items() if v is not None}
    env = EnvSettingsSource(Settings)()
    file = ConfigFileSource(Settings).toml_data
    return {
        name: "flag" if name in given else "env" if name in env else "file" if name in file else "default"
        for name in Settings.model_fields
    }
