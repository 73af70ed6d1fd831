"""The lines of a streamed HTTP body, grouped by the piece of body that completed them."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable

from llmmesh.runtime.errors import RpcFailure
from llmmesh_provider.backend import Delta, coalesce


async def lines_by_read(body: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """The complete lines (without line endings) of each piece the HTTP client hands over.

    Splitting the raw bytes here skips the text decoding and line-decoder layers of the HTTP
    client, and frames the upstream sent in one piece stay together. A last line without a
    line ending is yielded when the body ends.
    """
    pending = b""
    async for data in body:
        *complete, pending = (pending + data).split(b"\n")
        if complete:
            yield [line.removesuffix(b"\r") for line in complete]
    if pending:
        yield [pending.removesuffix(b"\r")]


async def deltas_by_read(
    body: AsyncIterable[bytes], read_line: Callable[[bytes, list[Delta]], None]
) -> AsyncIterator[Delta]:
    """The deltas of each piece's lines, with pieces that belong together joined (see
    `coalesce`); `read_line` appends a line's deltas, if any.

    When `read_line` raises an RpcFailure, the deltas read before it are yielded first, so the
    caller still gets what the upstream sent before it failed.
    """
    async for lines in lines_by_read(body):
        deltas: list[Delta] = []
        failure: RpcFailure | None = None
        try:
            for line in lines:
                read_line(line, deltas)
        except RpcFailure as error:
            failure = error
        for delta in coalesce(deltas):
            yield delta
        if failure is not None:
            raise failure
