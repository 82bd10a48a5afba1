"""Many Lua script calls in one round trip, on one Redis server or a Redis Cluster alike.

:func:`run_scripts` sends each call as EVALSHA in one non-transactional pipeline: on a cluster
redis-py splits it by node, each call going to the node of its keys' slot (a script's keys
share a hash tag, see :mod:`stockctl.wire.names`). Each script is atomic on its own; the batch
as a whole is not, so callers write scripts that tell a repeated or partial batch apart
(fences and watermarks). A node that lacks a script (a restarted server, a promoted replica:
the script cache is not replicated) answers NOSCRIPT; the script is loaded and those calls
alone are sent again. Any other error is raised, after every call of the batch has run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    import redis.asyncio as aioredis


@dataclass(frozen=True)
class Lua:
    """A script's text and the SHA-1 that EVALSHA names it by."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


@dataclass(frozen=True)
class Call:
    script: Lua
    keys: Sequence[str]
    args: Sequence[Any]


async def run_scripts(r: aioredis.Redis, calls: Sequence[Call]) -> list[Any]:
    """Every call's result, in order; raises the first error other than NOSCRIPT."""
    results: list[Any] = [None] * len(calls)
    pending = list(range(len(calls)))
    for _ in range(3):  # a load, then a resend; a third NOSCRIPT means a failover in between
        async with r.pipeline(transaction=False) as pipe:
            for i in pending:
                call = calls[i]
                # execute_command: redis-py's cluster pipeline blocks its evalsha() method (it
                # cannot tell keys from args), but routes a raw EVALSHA by its declared keys.
                pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
            replies = await pipe.execute(raise_on_error=False)
        missing: list[int] = []
        failure: Exception | None = None
        for i, reply in zip(pending, replies, strict=True):
            if isinstance(reply, NoScriptError):
                missing.append(i)
            elif isinstance(reply, Exception):
                failure = failure or reply
            else:
                results[i] = reply
        if failure is not None:
            raise failure
        if not missing:
            return results
        for script in {calls[i].script for i in missing}:
            await r.script_load(script.text)  # on a cluster: every primary
        pending = missing
    raise NoScriptError("scripts kept vanishing from Redis while being sent; retrying the batch")
