"""A caller that stops reading costs a bounded buffer for a bounded time, then its stream ends.

Each event is written with a stall timeout. A write that waits longer means the caller's
flow-control window has been full for that long: the stream ends with RESOURCE_EXHAUSTED
(STREAM_STALLED), which closes the pipeline behind it, cancels the upstream call and
settles what reached the router. Until then the router holds one stream buffer per call
(`STREAM_BUFFER_BYTES` of text in a shared flight, one flow-control window from the
provider) and the provider stops reading the upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import structlog

from llmmesh.router.v1 import router_service_pb2
from llmmesh.runtime.errors import RpcFailure
from llmmesh_router import observability

log = structlog.get_logger(__name__)

STREAM_BUFFER_BYTES = 64 * 1024


def stalled_failure(delivered_deltas: int, delivered_chars: int) -> RpcFailure:
    return RpcFailure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"the caller stopped reading; the stream ended after {delivered_deltas} deltas "
        f"({delivered_chars} characters)",
        reason="STREAM_STALLED",
        metadata={
            "delivered_deltas": str(delivered_deltas),
            "delivered_chars": str(delivered_chars),
        },
    )


async def write_all(
    context: grpc.aio.ServicerContext[Any, Any],
    events: AsyncIterator[router_service_pb2.StreamCompleteResponse],
    stall_timeout_s: float,
) -> None:
    """Writes every event, each within the stall timeout."""
    deltas = chars = 0
    async for event in events:
        try:
            async with asyncio.timeout(stall_timeout_s):
                await context.write(event)
        except TimeoutError:
            observability.streams_stalled.add(1)
            log.warning("stream_stalled", stall_timeout_s=stall_timeout_s, delivered_deltas=deltas)
            raise stalled_failure(deltas, chars) from None
        if event.HasField("delta"):
            deltas += 1
            chars += len(event.delta.text)
