"""Identical in-flight requests share one call; each listener gets the whole stream; one
listener's cancel leaves the others untouched; the last one's cancel stops the call; a
flight holds a bounded buffer, so callers that stop reading stop the upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llmmesh_router.coalescing import Coalescer, FellBehind


class Upstream:
    def __init__(self, events: int = 5, delay_s: float = 0.01) -> None:
        self.calls = 0
        self.produced = 0
        self.cancelled = False
        self._events = events
        self._delay_s = delay_s

    async def produce(self) -> AsyncIterator[int]:
        self.calls += 1
        try:
            for index in range(self._events):
                await asyncio.sleep(self._delay_s)
                self.produced += 1
                yield index
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled = True
            raise


async def _collect(coalescer: Coalescer[int], upstream: Upstream) -> list[int]:
    return [event async for event, _ in coalescer.stream("key", upstream.produce)]


async def test_fifty_identical_requests_make_one_upstream_call() -> None:
    coalescer: Coalescer[int] = Coalescer()
    upstream = Upstream()
    results = await asyncio.gather(*(_collect(coalescer, upstream) for _ in range(50)))
    assert upstream.calls == 1
    assert all(result == [0, 1, 2, 3, 4] for result in results)
    assert coalescer.in_flight() == 0


async def test_late_joiner_still_receives_the_stream_from_its_start() -> None:
    coalescer: Coalescer[int] = Coalescer()
    upstream = Upstream(delay_s=0.02)
    first = asyncio.create_task(_collect(coalescer, upstream))
    await asyncio.sleep(0.05)
    late = await _collect(coalescer, upstream)
    assert late == [0, 1, 2, 3, 4]
    assert await first == late
    assert upstream.calls == 1


async def test_one_listener_cancelling_does_not_cancel_the_others() -> None:
    coalescer: Coalescer[int] = Coalescer()
    upstream = Upstream(delay_s=0.02)
    leaver = asyncio.create_task(_collect(coalescer, upstream))
    stayer = asyncio.create_task(_collect(coalescer, upstream))
    await asyncio.sleep(0.03)
    leaver.cancel()
    assert await stayer == [0, 1, 2, 3, 4]
    assert not upstream.cancelled


async def test_last_listener_cancelling_cancels_the_upstream_call() -> None:
    coalescer: Coalescer[int] = Coalescer()
    upstream = Upstream(delay_s=0.05)
    listener = asyncio.create_task(_collect(coalescer, upstream))
    await asyncio.sleep(0.07)
    listener.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listener
    assert upstream.cancelled
    assert coalescer.in_flight() == 0


async def test_upstream_error_reaches_every_listener_after_the_events_before_it() -> None:
    coalescer: Coalescer[int] = Coalescer()

    async def failing() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0.01)
        raise RuntimeError("cut")

    async def collect() -> list[int]:
        received = []
        with pytest.raises(RuntimeError, match="cut"):
            async for event, _ in coalescer.stream("key", failing):
                received.append(event)
        return received

    assert await asyncio.gather(collect(), collect()) == [[1], [1]]


async def test_only_the_caller_that_started_the_flight_is_told_so() -> None:
    coalescer: Coalescer[int] = Coalescer()
    upstream = Upstream()

    async def starters() -> set[bool]:
        return {started async for _, started in coalescer.stream("key", upstream.produce)}

    assert sorted(await asyncio.gather(starters(), starters()), key=str) == [{False}, {True}]


async def test_a_flight_reads_no_further_ahead_than_its_buffer_when_nobody_reads() -> None:
    coalescer: Coalescer[int] = Coalescer(max_buffered=10)
    upstream = Upstream(events=1000, delay_s=0)
    stream = coalescer.stream("key", upstream.produce)
    assert await anext(stream) == (0, True)
    await asyncio.sleep(0.05)  # the caller stops reading
    assert upstream.produced <= 1 + 10 + 1
    await stream.aclose()
    assert upstream.cancelled


async def test_a_late_joiner_beyond_the_replay_buffer_gets_its_own_flight() -> None:
    coalescer: Coalescer[int] = Coalescer(max_buffered=3)
    upstream = Upstream(events=8, delay_s=0.01)
    first = asyncio.create_task(_collect(coalescer, upstream))
    while upstream.produced < 5:
        await asyncio.sleep(0.005)
    late = await _collect(coalescer, upstream)
    assert late == list(range(8)), "the late joiner's own flight starts from the beginning"
    assert await first == list(range(8))
    assert upstream.calls == 2


async def test_a_stalled_listener_is_dropped_instead_of_holding_back_the_others() -> None:
    coalescer: Coalescer[int] = Coalescer(max_buffered=5)
    upstream = Upstream(events=100, delay_s=0)
    stalled = coalescer.stream("key", upstream.produce)
    assert await anext(stalled) == (0, True)
    reader = await _collect(coalescer, upstream)
    assert reader == list(range(100))
    with pytest.raises(FellBehind):
        await anext(stalled)
    assert upstream.calls == 1
