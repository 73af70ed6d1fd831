"""An async stream read ahead in its own task and handed over in bursts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

T = TypeVar("T")

# Items read ahead of the consumer at most: a consumer that stops (its caller stopped
# reading) stops the reader, and with it the upstream, after this many.
MAX_READ_AHEAD = 16


class _Ended:
    """Put on the queue when the source is exhausted."""


class Bursts(Generic[T]):
    """The source's items, each wait returning every item that is ready by then.

    A reader task pulls from the source while the consumer is busy; an upstream that sends a
    whole answer in one read therefore costs the consumer two wake-ups and two messages (the
    first item goes alone, so it never waits for the rest to be parsed), and a paced upstream
    is passed on item by item with nothing held back. The reader runs each pull inside
    `pulling()`, so spans the source opens get the right parent. It reads at most
    `max_read_ahead` items ahead of the consumer, so a consumer that stops reading stops
    the source too.
    """

    def __init__(
        self,
        source: AsyncGenerator[T, None],
        pulling: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
        *,
        max_read_ahead: int = MAX_READ_AHEAD,
    ) -> None:
        self._source = source
        self._pulling = pulling
        self._queue: asyncio.Queue[T | BaseException | _Ended] = asyncio.Queue(max_read_ahead)
        self._reader: asyncio.Task[None] | None = None
        self._ended = False

    async def next_burst(self) -> list[T]:
        """The items ready now, at least one; an empty list once the source is exhausted.

        The source's exception is raised once the items before it have been handed over.
        """
        if self._ended:
            return []
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read())
        burst: list[T] = []
        item = await self._queue.get()
        while True:
            if isinstance(item, _Ended):
                self._ended = True
                return burst
            if isinstance(item, BaseException):
                if burst:
                    # Raised on the next call, once the caller has what came before it.
                    self._queue.put_nowait(item)
                    return burst
                self._ended = True
                raise item
            burst.append(item)
            if self._queue.empty():
                return burst
            item = self._queue.get_nowait()

    async def aclose(self) -> None:
        """Stops the reader, which closes the source (and the upstream call behind it)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        else:
            await self._source.aclose()

    async def __aenter__(self) -> Bursts[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _read(self) -> None:
        async with contextlib.aclosing(self._source):
            try:
                first = True
                while True:
                    with self._pulling():
                        item = await anext(self._source)
                    await self._queue.put(item)
                    if first:
                        # Lets the consumer pass the first item on before the rest of a burst
                        # is read: batching must never delay the first token.
                        first = False
                        await asyncio.sleep(0)
            except StopAsyncIteration:
                await self._queue.put(_Ended())
            except Exception as error:  # noqa: BLE001 - handed over to the consumer
                await self._queue.put(error)
