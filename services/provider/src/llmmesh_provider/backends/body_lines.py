"""The lines of a streamed HTTP body, grouped by the piece of body that completed them."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable

from llmmesh.runtime.errors import RpcFailure


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


async def texts_by_read(
    body: AsyncIterable[bytes], read_line: Callable[[bytes, list[str]], None]
) -> AsyncIterator[str]:
    """The text of each piece's lines, joined; `read_line` appends a line's text, if any.

    When `read_line` raises an RpcFailure, the text read before it is yielded first, so the
    caller still gets what the upstream sent before it failed.
    """
    async for lines in lines_by_read(body):
        texts: list[str] = []
        failure: RpcFailure | None = None
        try:
            for line in lines:
                read_line(line, texts)
        except RpcFailure as error:
            failure = error
        if texts:
            yield "".join(texts)
        if failure is not None:
            raise failure
