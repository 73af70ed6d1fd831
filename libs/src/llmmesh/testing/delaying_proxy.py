"""A TCP proxy that delays every reply, to make a real server (Redis, say) slow but alive.

Each chunk the upstream sends reaches the client `delay_s` later, in order, like a long
network path: replies are late, never lost, and throughput is not throttled. Requests pass
at once. `delay_s` may be changed while it runs (from any thread). Run it in a test's loop
(`async with DelayingProxy(port) as proxy`) or on its own thread with
`llmmesh.testing.background.serving_in_background`.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

CHUNK_BYTES = 64 * 1024
LISTEN_BACKLOG = 4096


class DelayingProxy:
    """Listens on 127.0.0.1:`port` (a free one by default) and forwards to `upstream_port`."""

    def __init__(self, upstream_port: int, delay_s: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> DelayingProxy:
        # A deep backlog: a burst of reconnects must not wait for this loop to accept them
        # (a full backlog drops SYNs, and the client retries only after a second).
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, backlog=LISTEN_BACKLOG
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            upstream_in, upstream_out = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            client_out.close()
            self._connections.discard(task)
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(client_in, upstream_out))
                group.create_task(self._delayed_pump(upstream_in, client_out))
        except* (OSError, EOFError):
            pass
        finally:
            for writer in (client_out, upstream_out):
                writer.close()
            self._connections.discard(task)

    async def _delayed_pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await line.get()
                if not chunk:
                    sink.write_eof()
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                sink.write(chunk)
                await sink.drain()

        delivery = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await source.read(CHUNK_BYTES)
                line.put_nowait((loop.time() + self.delay_s, chunk))
                if not chunk:
                    break
            await delivery
        finally:
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while chunk := await source.read(CHUNK_BYTES):
        sink.write(chunk)
        await sink.drain()
    sink.write_eof()
