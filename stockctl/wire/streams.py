"""Every JetStream stream stockctl keeps, defined in one place.

A stream's configuration is a contract between the processes that write it and those that
read it, as a subject is: the tick stream ``MD_TICKS`` (written by the publisher, feeds and
matching; read by the processor and history), the exchange's command stream ``EX_ORDERS``
(written by the gateway, liquidity and matching's time commands; read by matching) and its
event stream ``EX_EVENTS`` (written by matching, which reads it back after a restart; one
message is a record of one market's events of a batch, see :mod:`stockctl.wire.exchange`).
Names and subjects come from :mod:`stockctl.wire.names`.

Each ``*_config`` function is pure. Each ``ensure_*`` function creates its streams, or
brings an existing one in line with the configuration (limits changed in the settings),
through the ``JetStreamContext`` the caller passes: this module opens no connection.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import nats.errors
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from stockctl.wire import names

if TYPE_CHECKING:
    from nats.js import JetStreamContext


class Settings(Protocol):
    """The limits these definitions read (``stockctl.settings.Settings`` has them): a protocol,
    so that wire does not import settings, which imports wire."""

    tick_max_age_s: int
    tick_max_bytes: int
    stream_replicas: int


TICK_DUPLICATE_WINDOW_S = 120.0
STREAM_UNAVAILABLE = (ServiceUnavailableError, nats.errors.TimeoutError, nats.errors.NoRespondersError)
"""What a JetStream API request gets while its stream has no leader (one is being elected)."""
EXCHANGE_DUPLICATE_WINDOW_S = 600.0  # a client may retry a command with its id for 10 minutes
EXCHANGE_MAX_AGE_S = 30 * 86_400.0


def tick_stream_config(settings: Settings) -> api.StreamConfig:
    """``MD_TICKS``: file storage, bounded by the configured age and size."""
    return api.StreamConfig(
        name=names.TICK_STREAM,
        subjects=[names.TICK_SUBJECTS],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        max_age=float(settings.tick_max_age_s),
        max_bytes=settings.tick_max_bytes,
        duplicate_window=TICK_DUPLICATE_WINDOW_S,
        num_replicas=settings.stream_replicas,
    )


def exchange_stream_configs(replicas: int = 1) -> list[api.StreamConfig]:
    """``EX_ORDERS`` and ``EX_EVENTS``: file storage, kept 30 days, de-duplicated for 10 minutes.

    ``EX_EVENTS`` also holds the matching terms (:data:`~stockctl.wire.names.TERM_SUBJECTS`):
    JetStream checks a record's expected term only against a subject of the same stream."""
    return [
        api.StreamConfig(
            name=name,
            subjects=subjects,
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            duplicate_window=EXCHANGE_DUPLICATE_WINDOW_S,
            max_age=EXCHANGE_MAX_AGE_S,
            num_replicas=replicas,
        )
        for name, subjects in (
            (names.ORDER_STREAM, [names.ORDER_SUBJECTS]),
            (names.EVENT_STREAM, [names.EVENT_SUBJECTS, names.TERM_SUBJECTS]),
        )
    ]


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> api.StreamInfo:
    """Create the stream, or update it if it exists with another configuration.

    Replicas are never lowered: an operator who raised a stream to R3 by hand, or a cluster
    started with more, keeps them when a daemon started with the default 1 comes up.
    """
    try:
        return await js.add_stream(config)
    except BadRequestError:
        # Exists with other limits (settings changed): bring it in line, keeping its replicas.
        assert config.name is not None, "every stockctl stream has a name"
        found = await js.stream_info(config.name)
        config = replace(config, num_replicas=max(config.num_replicas or 1, found.config.num_replicas or 1))
        return await js.update_stream(config)


async def ensure_tick_stream(js: JetStreamContext, settings: Settings) -> api.StreamInfo:
    """Create or update ``MD_TICKS``."""
    return await ensure_stream(js, tick_stream_config(settings))


async def ensure_exchange_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create or update ``EX_ORDERS`` and ``EX_EVENTS``."""
    for config in exchange_stream_configs(replicas):
        await ensure_stream(js, config)


async def last_tick_msg(js: JetStreamContext, symbol: str, partitions: int) -> api.RawStreamMsg | None:
    """The newest stored tick of ``symbol``, on its partitioned subject or, in a stream written
    before partitions, on the old ``md.tick.<SYM>``; None if the stream has none."""
    for subject in (names.tick_subject(symbol, partitions), names.legacy_tick_subject(symbol)):
        try:
            return await js.get_last_msg(names.TICK_STREAM, subject)
        except NotFoundError:
            continue
    return None
