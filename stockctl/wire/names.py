"""Every NATS subject, JetStream name and Redis key, built in one place.

No other module spells a subject or a key: they call these, so a rename is one edit
and a grep for a function finds every reader and writer.

Symbols and market names enter a subject or a key only through :func:`symbol_token`, one
reversible encoding: ``A-Z``, ``0-9``, ``_`` and ``-`` stand for themselves (so ``AAPL`` and
``TATA_INR`` are spelled as before), and every other character of a symbol (``.`` and ``/``,
see :mod:`stockctl.wire.symbols`) becomes ``%`` and its two hex digits, as in a URL: ``BRK.B`` is
``md.tick.BRK%2EB``, ``BTC/USDT`` is ``md:quote:BTC%2FUSDT``. A token never holds ``.``, ``*``,
``>`` or whitespace (a NATS subject token cannot) nor ``:`` (the Redis key separator), and
``%`` is never part of a symbol, so :func:`symbol_from_token` gives the symbol back exactly.
"""

from __future__ import annotations

import re
import zlib

# --- JetStream -------------------------------------------------------------------------

TICK_STREAM = "MD_TICKS"
"""Stream holding raw ticks, bounded by age and size."""

TICK_SUBJECTS = "md.tick.>"
QUOTE_SUBJECTS = "md.quote.>"
SIGNAL_SUBJECTS = "md.signal.>"

PROCESSOR_DURABLE = "processor"
"""The processor's durable consumer of the whole tick stream before partitions (removed at start)."""

MATCHING_LEASES_BUCKET = "matching-leases"
"""NATS KV bucket: ``g.<group>`` -> the matching daemon active for that market group (a lease)."""

MATCHING_GROUP = "main"
"""The market group of an exchange without ``STOCKCTL_MARKET_GROUPS``: every market, under the
names it always had (see :mod:`stockctl.exchange.groups`)."""

LEASES_BUCKET = "processor-leases"
"""NATS KV bucket: ``p<N>`` -> the processor that owns partition N (a lease: it expires unless
renewed), and ``m.<id>`` -> a live processor (so each knows how many share the partitions)."""


def processor_durable(partition: int) -> str:
    """Durable pull consumer of one partition's ticks (``md.tick.<N>.>``), whoever owns it."""
    return f"processor-p{partition}"


def partition_subjects(partition: int) -> str:
    return f"md.tick.{partition}.>"


def partition_of(symbol: str, partitions: int) -> int:
    """The partition a symbol's ticks are in: CRC-32 of its token, so every process agrees."""
    return zlib.crc32(symbol_token(symbol).encode()) % partitions


HISTORY_DURABLE = "history"
"""Durable consumer of the tick stream of the history writer (its own position, its own acks)."""


_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")


def symbol_token(symbol: str) -> str:
    """A symbol (or market) as one NATS subject token and Redis key part; see the module doc."""
    if all(ch in _PLAIN for ch in symbol):
        return symbol  # the common case, and every symbol that was valid before the encoding
    return "".join(ch if ch in _PLAIN else f"%{ord(ch):02X}" for ch in symbol)


def symbol_from_token(token: str) -> str:
    """Inverse of :func:`symbol_token`."""
    if "%" not in token:
        return token
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), token)


def tick_subject(symbol: str, partitions: int) -> str:
    """``md.tick.<partition>.<SYM>``: a processor reads the partitions it owns."""
    return f"md.tick.{partition_of(symbol, partitions)}.{symbol_token(symbol)}"


def legacy_tick_subject(symbol: str) -> str:
    """``md.tick.<SYM>``, the subject before partitions: where an older stream's last tick is."""
    return f"md.tick.{symbol_token(symbol)}"


def quote_subject(symbol: str) -> str:
    return f"md.quote.{symbol_token(symbol)}"


def signal_subject(symbol: str) -> str:
    return f"md.signal.{symbol_token(symbol)}"


def candle_subject(symbol: str, interval: str) -> str:
    """Core NATS: the current candle after each processor batch that changed it."""
    return f"md.candle.{symbol_token(symbol)}.{interval}"


def symbol_of(subject: str) -> str:
    """The symbol of an ``md.<kind>.<SYM>`` (or ``ex.<kind>.<MKT>``) subject, decoded."""
    return symbol_from_token(subject.rsplit(".", 1)[-1])


# --- Redis -----------------------------------------------------------------------------
#
# Keys that one transaction or Lua script touches together share a hash tag (the part in
# braces), so a Redis Cluster keeps them in one slot: per symbol ``{AAPL}``, per user
# ``{email}``, per market ``{TATA_INR}``. Accounts and alerts each take one tag, ``{auth}`` and
# ``{alerts}``: their scripts join a user's keys with instance-wide ones (every email, every
# active alert), which no per-user tag could. On a single server the braces are just characters.


def _tag(symbol: str) -> str:
    """A symbol's key part as its own hash tag: every key of one symbol lands in one slot."""
    return f"{{{symbol_token(symbol)}}}"


def list_seq_key(list_key: str) -> str:
    """Hash beside a view list (same slot): market -> the last event seq the list includes."""
    return f"{list_key}:seq"


SYMBOLS_KEY = "md:symbols"
"""Set of every symbol the processor has seen."""

STREAM_EPOCH_KEY = "md:stream-epoch"
"""Creation time of the tick stream the processor's dedup state belongs to."""


def quote_key(symbol: str) -> str:
    """Hash: latest price, day open/high/low, SMA values, dedup sequence numbers."""
    return f"md:quote:{_tag(symbol)}"


def history_key(symbol: str) -> str:
    """List of the last N price points, oldest first."""
    return f"md:hist:{_tag(symbol)}"


def candles_key(symbol: str, interval: str) -> str:
    """Sorted set of candles scored by bucket start (ns)."""
    return f"md:candles:{_tag(symbol)}:{interval}"


def signals_key(symbol: str) -> str:
    """List of SMA crossover signals, oldest first."""
    return f"md:signals:{_tag(symbol)}"


# --- accounts (auth daemon) -------------------------------------------------------------

AUTH = "{auth}"
"""The hash tag (and prefix) of every account key: one slot, see the Redis section above."""

USERS_KEY = f"{AUTH}:users"
"""Set of every registered (normalised) email."""

DISABLED_KEY = f"{AUTH}:disabled"
"""Set of disabled emails: they cannot log in or refresh, and the gateway refuses them."""


def user_key(email: str) -> str:
    """Hash: email, argon2 hash, created, disabled."""
    return f"{AUTH}:user:{email}"


def refresh_key(token_hash: str) -> str:
    """String: the email a refresh token (by its SHA-256) belongs to; expires with the token."""
    return f"{AUTH}:refresh:{token_hash}"


def sessions_key(email: str) -> str:
    """Set of a user's live refresh-token hashes, to revoke them all at once."""
    return f"{AUTH}:sessions:{email}"


def login_failures_key(kind: str, value: str) -> str:
    """Counter of failed logins per ``email`` or ``ip`` within the throttle window."""
    return f"{AUTH}:fail:{kind}:{value}"


def registrations_key(ip: str) -> str:
    """Counter of registrations from one client address within the throttle window."""
    return f"{AUTH}:register:ip:{ip}"


def skeleton_key(skeleton: str) -> str:
    """The account whose email looks like ``skeleton`` (confusable characters mapped to Latin)."""
    return f"{AUTH}:skeleton:{skeleton}"


SIGNING_KEYS_KEY = f"{AUTH}:signing-keys"
"""Hash: the auth daemons' JWT signing keys (:mod:`stockctl.auth.keyring`): ``current`` (a kid),
``key:<kid>`` (public key, private key wrapped by ``secrets/jwt-keyring.key``), ``retire:<kid>``."""


ACCOUNT_DISABLED_SUBJECT = "auth.disabled"
"""Core NATS: ``{"email"}`` of an account the operator just disabled; gateways close its sockets."""


def used_refresh_key(token_hash: str) -> str:
    """String: the email of a refresh token already rotated away, kept until it would have
    expired; presenting it again is token theft, so all of that user's sessions are revoked."""
    return f"{AUTH}:refresh-used:{token_hash}"


# --- exchange (matching daemon) ----------------------------------------------------------

ORDER_STREAM = "EX_ORDERS"
"""Stream of commands (place, cancel, fund), de-duplicated by ``Nats-Msg-Id``."""

EVENT_STREAM = "EX_EVENTS"
"""Stream of every outcome: the exchange's durable record."""

ORDER_SUBJECTS = "ex.order.>"
EVENT_SUBJECTS = "ex.event.>"
TERM_SUBJECTS = "ex.term.>"
"""Also in ``EX_EVENTS``: one message per term of a market group's active matching daemon."""


def term_subject(group: str) -> str:
    """Where a group's active matching daemon writes its term: every record it publishes
    expects this subject's last sequence to be its own term's, so an older leader is refused."""
    return f"ex.term.{group}"


ACCOUNTS_MARKET = "ACCOUNTS"
"""Pseudo-market of account commands and events (funding)."""

REPLY_HEADER = "Stockctl-Reply"
"""Header of a command naming the inbox that gets the command's events once they are stored."""


def order_subject(market: str) -> str:
    return f"ex.order.{symbol_token(market)}"


def event_subject(market: str) -> str:
    return f"ex.event.{symbol_token(market)}"


def book_subject(market: str) -> str:
    """Core NATS: depth snapshots and sequence-numbered deltas."""
    return f"ex.book.{symbol_token(market)}"


def query_subject(what: str, group: str = MATCHING_GROUP) -> str:
    """Core NATS request/reply to a group's matching daemon: ``balances``, ``orders``, ``book``..."""
    return f"ex.query.{what}" if group == MATCHING_GROUP else f"ex.query.{group}.{what}"


SNAPSHOT_KEY = "ex:snapshot"
"""Hash: the engine snapshot and the command stream sequence it includes (group ``main``)."""


def snapshot_key(group: str) -> str:
    """A market group's snapshot hash (``SNAPSHOT_KEY`` for ``main``)."""
    return SNAPSHOT_KEY if group == MATCHING_GROUP else f"{SNAPSHOT_KEY}:{group}"


GROUPS_KEY = "ex:groups"
"""String: the market-group layout the exchange's history was made with (one canonical line);
a matching daemon configured with another refuses to start."""


def fills_key(user: str) -> str:
    """List of a user's fills, oldest first (bounded)."""
    return f"ex:fills:{{{user}}}"


def trades_key(market: str) -> str:
    """List of a market's recent trades, oldest first (bounded)."""
    return f"ex:trades:{_tag(market)}"


VIEWS_SEQ_KEY = "ex:views-seq"
"""Hash: market -> an event seq whose fills/trades/orders views are all written. Written after
the lists (each list's own watermark, :func:`list_seq_key`, is the exact one), so it is a
lower bound: a restart rewrites from here, and the lists' watermarks skip what they hold."""


def exchange_tick_origin(event_seq: int) -> str:
    """``origin`` of a trade's tick: the event it came from, so a restart knows which are out."""
    return f"exchange:{event_seq}"


def event_seq_of_origin(origin: str) -> int | None:
    """Inverse of :func:`exchange_tick_origin`; ``None`` for other origins (and old ticks)."""
    kind, _, seq = origin.partition(":")
    return int(seq) if kind == "exchange" and seq.isdigit() else None


def orders_key(user: str) -> str:
    """List of a user's finished orders (filled or cancelled), oldest first (bounded)."""
    return f"ex:orders:{{{user}}}"


# --- price alerts (gateway writes, alerts daemon fires) -----------------------------------

ALERTS = "{alerts}"
"""The hash tag (and prefix) of every alert key: one slot, see the Redis section above."""

ALERT_CHANGED_SUBJECT = "alert.changed"
"""Core NATS: the gateway added or removed an alert; alerts daemons update their index."""

ALERT_FIRED_SUBJECT = "alert.fired"
"""Core NATS: an alert fired (the alert, status ``fired``); gateways deliver it to its user."""

ALERTS_ACTIVE_KEY = f"{ALERTS}:active"
"""Hash: alert id -> alert JSON, every user's active alerts (what the alerts daemon watches)."""

ALERT_IDS_KEY = f"{ALERTS}:next-id"
"""Counter: the last alert id handed out."""


def user_alerts_key(user: str) -> str:
    """Set of a user's active alert ids (the per-user limit counts these)."""
    return f"{ALERTS}:user:{user}"


def fired_alerts_key(user: str) -> str:
    """List of a user's fired alerts as JSON, oldest first (bounded)."""
    return f"{ALERTS}:fired:{user}"


# --- key layout ---------------------------------------------------------------------------

KEY_LAYOUT_KEY = "stockctl:key-layout"
"""String: the key layout version the data is in (absent: the layout before hash tags)."""

KEY_LAYOUT = "2"

_LEGACY_PER_NAME = re.compile(r"(md:quote|md:hist|md:signals|ex:fills|ex:orders|ex:trades):(.+)", re.DOTALL)
_LEGACY_CANDLES = re.compile(r"md:candles:([^{}:]+):([^{}:]+)")


def legacy_key_renamed(key: str) -> str | None:
    """The name a key of the layout before hash tags has now; None for a key that keeps its name.

    ``md:quote:AAPL`` is ``md:quote:{AAPL}``, ``ex:fills:a@b.c`` is ``ex:fills:{a@b.c}``,
    ``auth:...`` is ``{auth}:...`` and ``alerts:...`` is ``{alerts}:...``.
    """
    if key.startswith("auth:"):
        return f"{AUTH}:{key[5:]}"
    if key.startswith("alerts:"):
        return f"{ALERTS}:{key[7:]}"
    if m := _LEGACY_CANDLES.fullmatch(key):
        return f"md:candles:{{{m.group(1)}}}:{m.group(2)}"
    m = _LEGACY_PER_NAME.fullmatch(key)
    if m is None:
        return None
    name = m.group(2)
    # Already tagged: ``{name}`` or a list's ``{name}:seq``. No legacy name looks so: symbols
    # hold no braces, and an email cannot end in ``}``.
    if name.startswith("{") and (name.endswith("}") or name.endswith("}:seq")):
        return None
    return f"{m.group(1)}:{{{name}}}"
