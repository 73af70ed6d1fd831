"""A grpc.aio server with the mesh's server interceptor, for tests of handlers in one process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

import grpc
import grpc.aio

from llmmesh.runtime.interceptors import ServerCallInterceptor


@contextlib.asynccontextmanager
async def intercepted_server(
    handlers: Mapping[str, grpc.RpcMethodHandler],
    service: str = "t.T",
    add_more: Callable[[grpc.aio.Server], None] | None = None,
) -> AsyncIterator[grpc.aio.Channel]:
    """Serves `handlers` as `/<service>/<name>` (and whatever `add_more` registers) on a free
    port behind ServerCallInterceptor; yields a plain channel to it."""
    server = grpc.aio.server(interceptors=[ServerCallInterceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, handlers)])
    if add_more is not None:
        add_more(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)
