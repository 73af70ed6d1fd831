"""Runs an asyncio server (a fake upstream, say) on its own thread, for synchronous tests
and module-scoped fixtures that outlive one test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

ServerT = TypeVar("ServerT", bound=AbstractAsyncContextManager[object])

START_TIMEOUT_S = 10.0


@contextlib.contextmanager
def serving_in_background(server: ServerT) -> Iterator[ServerT]:
    """Enters `server` on a private event loop thread; exits it when the block ends."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        try:
            async with server:
                started.set()
                await stop.wait()
        except BaseException as error:
            failure.append(error)
            started.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(START_TIMEOUT_S) or failure:
        raise RuntimeError(f"background server did not start: {failure}")
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(START_TIMEOUT_S)
        loop.close()
