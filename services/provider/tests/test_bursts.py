"""Bursts hands over what is ready together, keeps order, and closes what it reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from llmmesh_provider.bursts import Bursts


async def _items(*items: int, pause_after: int | None = None) -> AsyncGenerator[int, None]:
    for position, item in enumerate(items):
        if position == pause_after:
            await asyncio.sleep(0.05)
        yield item


async def test_the_first_item_goes_alone_then_items_ready_together_come_in_one_burst() -> None:
    async with Bursts(_items(1, 2, 3, 4, 5, pause_after=4)) as bursts:
        # The first item never waits for the rest of a burst to be read.
        assert await bursts.next_burst() == [1]
        assert await bursts.next_burst() == [2, 3, 4]
        assert await bursts.next_burst() == [5]
        assert await bursts.next_burst() == []
        assert await bursts.next_burst() == []


async def test_the_sources_error_comes_after_the_items_before_it() -> None:
    async def failing() -> AsyncGenerator[int, None]:
        yield 1
        yield 2
        yield 3
        raise ValueError("upstream broke")

    async with Bursts(failing()) as bursts:
        assert await bursts.next_burst() == [1]
        assert await bursts.next_burst() == [2, 3]
        with pytest.raises(ValueError, match="upstream broke"):
            await bursts.next_burst()


async def test_closing_part_way_closes_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncGenerator[int, None]:
        try:
            while True:
                yield 1
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    async with Bursts(endless()) as bursts:
        assert await bursts.next_burst() == [1]

    assert closed.is_set()


async def test_closing_before_reading_closes_the_source() -> None:
    source = _items(1)
    await Bursts(source).aclose()

    with pytest.raises(StopAsyncIteration):
        await anext(source)


async def test_each_pull_runs_inside_the_given_context() -> None:
    inside: list[bool] = []
    active = False

    class Marking:
        def __enter__(self) -> None:
            nonlocal active
            active = True

        def __exit__(self, *exc_info: object) -> None:
            nonlocal active
            active = False

    async def observed() -> AsyncGenerator[int, None]:
        for item in range(3):
            inside.append(active)
            yield item

    async with Bursts(observed(), Marking) as bursts:
        assert await bursts.next_burst() == [0]
        assert await bursts.next_burst() == [1, 2]

    assert inside == [True, True, True]


async def test_a_consumer_that_stops_reading_stops_the_source_after_the_read_ahead() -> None:
    pulled = 0

    async def endless() -> AsyncGenerator[int, None]:
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    async with Bursts(endless(), max_read_ahead=4) as bursts:
        assert await bursts.next_burst() == [1]
        await asyncio.sleep(0.05)  # the consumer stalls
        # Four waiting in the queue, one in hand waiting for room: nothing more is pulled.
        assert pulled == 1 + 4 + 1
        assert await bursts.next_burst() == [2, 3, 4, 5]
        await asyncio.sleep(0.05)
        assert pulled == 5 + 4 + 1
