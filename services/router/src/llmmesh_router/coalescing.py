"""Identical requests in flight at once share one upstream call, within a bounded buffer.

The first caller starts the flight; the call runs as its own task, so no single caller's
cancellation stops it while others still listen. When the last caller leaves, the flight
is cancelled, and with it the upstream request.

Memory is bounded by `max_buffered` (in the units `weigh` gives events, bytes of text for
the router). A flight holds its stream from the first event while it is no longer than
that, so a late joiner replays it from the start; once longer, the flight stops taking
joiners (an identical request starts its own) and forgets what every listener has read.
The flight reads ahead of its fastest listener by at most `max_buffered`, so callers that
stop reading stop the upstream; a listener that falls twice that far behind the others
is dropped with `FellBehind` rather than holding them back or growing the buffer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Generic, TypeVar

EventT = TypeVar("EventT")

DEFAULT_MAX_BUFFERED = 64 * 1024


class FellBehind(Exception):
    """This listener lagged further behind its flight than the flight holds events for."""


class _Flight(Generic[EventT]):
    def __init__(self) -> None:
        # The events held, each with the total weight produced up to and including it.
        self.events: collections.deque[tuple[EventT, int]] = collections.deque()
        self.first_index = 0  # flight-wide index of events[0]
        self.weight_before_first = 0
        self.produced = 0
        self.produced_weight = 0
        self.joinable = True
        self.finished = False
        self.error: BaseException | None = None
        # Each listener's next event index; a listener that fell behind is removed.
        self.positions: dict[int, int] = {}
        self.listeners = 0
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    def unread_weight(self, position: int) -> int:
        if position == self.first_index:
            return self.produced_weight - self.weight_before_first
        return self.produced_weight - self.events[position - self.first_index - 1][1]

    def leader_unread_weight(self) -> int:
        return min((self.unread_weight(p) for p in self.positions.values()), default=0)

    def append(self, event: EventT, weight: int) -> None:
        self.produced += 1
        self.produced_weight += weight
        self.events.append((event, self.produced_weight))

    def forget_read_events(self) -> None:
        """Drops what every listener has read (only once no late joiner can need it)."""
        if self.joinable:
            return
        oldest = min(self.positions.values(), default=self.produced)
        while self.first_index < oldest:
            _, self.weight_before_first = self.events.popleft()
            self.first_index += 1


class Coalescer(Generic[EventT]):
    def __init__(
        self,
        weigh: Callable[[EventT], int] = lambda _event: 1,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self._flights: dict[str, _Flight[EventT]] = {}
        self._weigh = weigh
        self._max_buffered = max_buffered
        self._listener_ids = itertools.count()

    def in_flight(self) -> int:
        return len(self._flights)

    async def stream(
        self, key: str, produce: Callable[[], AsyncGenerator[EventT, None]]
    ) -> AsyncIterator[tuple[EventT, bool]]:
        """The flight's events, each paired with whether this caller started the flight."""
        flight = self._flights.get(key)
        started_here = flight is None
        if flight is None:
            flight = _Flight()
            self._flights[key] = flight
            flight.task = asyncio.create_task(self._fly(key, flight, produce))
        listener = next(self._listener_ids)
        flight.positions[listener] = 0
        flight.listeners += 1
        try:
            while True:
                async with flight.changed:
                    await flight.changed.wait_for(
                        lambda: (
                            listener not in flight.positions
                            or flight.positions[listener] < flight.produced
                            or flight.finished
                        )
                    )
                    if listener not in flight.positions:
                        raise FellBehind
                    position = flight.positions[listener]
                    ready = [
                        event
                        for event, _ in itertools.islice(
                            flight.events, position - flight.first_index, None
                        )
                    ]
                for event in ready:
                    yield event, started_here
                    async with flight.changed:
                        if listener not in flight.positions:
                            raise FellBehind
                        flight.positions[listener] += 1
                        flight.changed.notify_all()
                if flight.finished and flight.positions[listener] == flight.produced:
                    if flight.error is not None:
                        raise flight.error
                    return
        finally:
            flight.listeners -= 1
            async with flight.changed:
                flight.positions.pop(listener, None)
                flight.changed.notify_all()
            if flight.listeners == 0 and not flight.finished and flight.task is not None:
                flight.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flight.task

    async def _fly(
        self, key: str, flight: _Flight[EventT], produce: Callable[[], AsyncGenerator[EventT, None]]
    ) -> None:
        try:
            async with contextlib.aclosing(produce()) as events:
                async for event in events:
                    async with flight.changed:
                        flight.append(event, self._weigh(event))
                        self._bound(key, flight)
                        flight.changed.notify_all()
                        # Back pressure: read on only while some listener keeps up.
                        await flight.changed.wait_for(
                            lambda: flight.leader_unread_weight() < self._max_buffered
                        )
        except Exception as error:  # noqa: BLE001 - every listener re-raises it
            flight.error = error
        finally:
            self._leave(key, flight)
            flight.finished = True
            async with flight.changed:
                flight.changed.notify_all()

    def _bound(self, key: str, flight: _Flight[EventT]) -> None:
        if flight.joinable and flight.produced_weight > self._max_buffered:
            flight.joinable = False
            self._leave(key, flight)
        for listener, position in list(flight.positions.items()):
            if flight.unread_weight(position) > 2 * self._max_buffered:
                del flight.positions[listener]
        flight.forget_read_events()

    def _leave(self, key: str, flight: _Flight[EventT]) -> None:
        """Takes the flight out of the table, so identical requests start their own."""
        if self._flights.get(key) is flight:
            del self._flights[key]
