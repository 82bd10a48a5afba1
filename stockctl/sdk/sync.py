"""A thin synchronous wrapper of :class:`~stockctl.sdk.client.Client`, for scripts and notebooks.

:class:`SyncClient` runs one event loop in a daemon thread and hands every call to it, so its
methods are the async client's, blocking; live iterators become ordinary generators::

    with SyncClient(email="ada@example.com", password="...") as c:
        c.buy("TATA_INR", 1, "950")
        for q in c.quotes("AAPL"):
            print(q.price)

Every method takes and returns what the async one does; errors are the same exceptions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from stockctl.sdk.client import Client

T = TypeVar("T")


class SyncClient:
    """:class:`~stockctl.sdk.client.Client`, blocking. Takes the same arguments; use ``with``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stockctl-sdk", daemon=True)
        self._thread.start()
        self.client = Client(*args, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            if self._loop.is_running():  # a generator dropped after close(): nothing left to close
                self._run(agen.aclose())  # type: ignore[attr-defined]

    def __enter__(self) -> SyncClient:
        self._run(self.client.login())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and stop its thread."""
        if self._loop.is_running():
            self._run(self.client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    @property
    def renewals(self) -> int:
        return self.client.renewals

    def __getattr__(self, name: str) -> Any:
        """Any other method of the async client, blocking (an async iterator becomes a generator)."""
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if isinstance(result, AsyncIterator):
                return self._iterate(result)
            return self._run(result)

        call.__name__ = name
        call.__doc__ = attr.__doc__
        return call
