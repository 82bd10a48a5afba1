"""The tick stream's JetStream definition, created or brought in line at daemon start.

Every other piece of daemon plumbing that lived here has its own module now (daemon,
status, retry, connections, logs, http, process); this one is moving to the wire package
with the other stream definitions.
"""

from __future__ import annotations

import nats
from nats.js import JetStreamContext, api

from stockctl.settings import Settings
from stockctl.wire import names


async def ensure_tick_stream(js: JetStreamContext, settings: Settings) -> api.StreamInfo:
    """Create or update the tick stream: file storage, bounded by age and size."""
    config = api.StreamConfig(
        name=names.TICK_STREAM,
        subjects=[names.TICK_SUBJECTS],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        max_age=float(settings.tick_max_age_s),
        max_bytes=settings.tick_max_bytes,
        duplicate_window=120.0,
    )
    try:
        return await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        # Exists with other limits (settings changed): bring it in line.
        return await js.update_stream(config)
