"""Identical requests in flight at once share one upstream call.

The first caller starts the flight; the call runs as its own task, so no single caller's
cancellation stops it while others still listen. Every caller, however late it joins,
reads the whole stream from the first event. When the last caller leaves, the flight is
cancelled, and with it the upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

EventT = TypeVar("EventT")


class _Flight(Generic[EventT]):
    def __init__(self) -> None:
        self.events: list[EventT] = []
        self.finished = False
        self.error: BaseException | None = None
        self.listeners = 0
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None


class Coalescer(Generic[EventT]):
    def __init__(self) -> None:
        self._flights: dict[str, _Flight[EventT]] = {}

    def in_flight(self) -> int:
        return len(self._flights)

    async def stream(
        self, key: str, produce: Callable[[], AsyncIterator[EventT]]
    ) -> AsyncIterator[tuple[EventT, bool]]:
        """The flight's events, each paired with whether this caller started the flight."""
        flight = self._flights.get(key)
        started_here = flight is None
        if flight is None:
            flight = _Flight()
            self._flights[key] = flight
            flight.task = asyncio.create_task(self._fly(key, flight, produce))
        flight.listeners += 1
        delivered = 0
        try:
            while True:
                async with flight.changed:
                    while delivered == len(flight.events) and not flight.finished:
                        await flight.changed.wait()
                while delivered < len(flight.events):
                    yield flight.events[delivered], started_here
                    delivered += 1
                if flight.finished and delivered == len(flight.events):
                    if flight.error is not None:
                        raise flight.error
                    return
        finally:
            flight.listeners -= 1
            if flight.listeners == 0 and not flight.finished and flight.task is not None:
                flight.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flight.task

    async def _fly(
        self, key: str, flight: _Flight[EventT], produce: Callable[[], AsyncIterator[EventT]]
    ) -> None:
        try:
            async for event in produce():
                async with flight.changed:
                    flight.events.append(event)
                    flight.changed.notify_all()
        except Exception as error:  # noqa: BLE001 - every listener re-raises it
            flight.error = error
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.finished = True
            async with flight.changed:
                flight.changed.notify_all()
