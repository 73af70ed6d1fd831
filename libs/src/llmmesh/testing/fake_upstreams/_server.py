"""The HTTP server shared by the fake upstreams: lifecycle, request log, reply script and faults."""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import hashlib
import json
import math
import struct
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self, overload

from aiohttp import web
from multidict import CIMultiDict

from llmmesh.testing.fake_upstreams._replies import (
    DEFAULT_ANSWER_CHUNKS,
    Reply,
    UpstreamProblem,
)

# Hung handlers are cancelled at shutdown instead of being waited for.
SHUTDOWN_TIMEOUT_S = 0.5


@dataclasses.dataclass
class RecordedRequest:
    """One request the fake received, and how its exchange ended."""

    method: str
    path: str
    # Case-insensitive, like HTTP header names.
    headers: Mapping[str, str]
    body: Any
    # The client's address: requests that share it came over one kept-alive connection.
    peer: tuple[str, int] | None = None
    # The client closed the connection before the fake finished the response.
    disconnected: bool = False
    # The fake sent the whole response.
    completed: bool = False
    # The fake dropped the connection mid-body, as scripted.
    cut: bool = False
    # Bytes of the streamed body written so far: what a client that stops reading let the
    # upstream produce before back pressure stopped it.
    bytes_sent: int = 0
    _ended: asyncio.Event = dataclasses.field(default_factory=asyncio.Event, repr=False)

    async def wait_ended(self, timeout_s: float = 5.0) -> None:
        """Waits until the exchange completed or the client went away."""
        await asyncio.wait_for(self._ended.wait(), timeout_s)


class RenderedFrames(Sequence[bytes]):
    """One frame per answer chunk, rendered when sent: a long answer costs no memory up front."""

    def __init__(self, chunks: Sequence[str], render: Callable[[str], bytes]) -> None:
        self._chunks = chunks
        self._render = render

    def __len__(self) -> int:
        return len(self._chunks)

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            return RenderedFrames(self._chunks[index], self._render)
        return self._render(self._chunks[index])


@dataclasses.dataclass(frozen=True)
class StreamFrames:
    """A streamed answer in one provider's wire format, frame by frame."""

    content_type: str
    headers: Mapping[str, str]
    opening: Sequence[bytes]
    # One frame per answer chunk.
    chunks: Sequence[bytes]
    closing: Sequence[bytes]
    malformed: bytes


@dataclasses.dataclass(frozen=True)
class AnswerPlan:
    """The answer chunks to send for one request and why the answer ends."""

    chunks: tuple[str, ...]
    truncated_by_max_tokens: bool
    input_tokens: int
    cached_input_tokens: int
    model: str

    @property
    def output_tokens(self) -> int:
        return len(self.chunks)


# Produces the normal (unfaulted) response to a recorded request.
Answer = Callable[[web.Request, RecordedRequest, Reply], Awaitable[web.StreamResponse]]


class FakeUpstream(abc.ABC):
    """A real HTTP server on a local port that speaks one provider's API, scriptable per request.

    Use it as an async context manager inside a test's event loop, or run it as a process
    with `python -m llmmesh.testing.fake_upstreams`. Replies queued with `enqueue` answer the
    next requests in order; after that every request gets `default_reply`.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_reply: Reply | None = None,
        answer_chunks: Sequence[str] = DEFAULT_ANSWER_CHUNKS,
        embedding_dimensions: int = 8,
    ) -> None:
        self.host = host
        self.default_reply = default_reply or Reply()
        self.answer_chunks = tuple(answer_chunks)
        self.embedding_dimensions = embedding_dimensions
        self.requests: list[RecordedRequest] = []
        self._requested_port = port
        self._port: int | None = None
        self._script: collections.deque[Reply] = collections.deque()
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts listening; `port` and `base_url` are known afterwards."""
        app = web.Application()
        self._add_routes(app)
        # handler_cancellation: a client that disconnects cancels its handler, which is how
        # the fake notices that a cancelled call reached the upstream.
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stops listening and drops open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake upstream is not started")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    @abc.abstractmethod
    def base_url(self) -> str:
        """The base URL to give the provider's SDK."""

    # -- scripting and inspection ----------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Answers the next requests with these replies, in order."""
        self._script.extend(replies)

    def reset(self) -> None:
        """Forgets scripted replies not yet used and the requests received so far."""
        self._script.clear()
        self.requests.clear()

    @property
    def pending_replies(self) -> int:
        """Scripted replies not yet used."""
        return len(self._script)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("the fake upstream received no request")
        return self.requests[-1]

    # -- provider specifics ----------------------------------------------------------------

    @abc.abstractmethod
    def _add_routes(self, app: web.Application) -> None: ...

    @abc.abstractmethod
    def _error_response(self, problem: UpstreamProblem, reply: Reply) -> web.Response:
        """The provider's HTTP error for the problem."""

    @abc.abstractmethod
    def _problem_frame(self, problem: UpstreamProblem) -> bytes:
        """The provider's in-stream error frame for the problem."""

    # -- shared machinery ------------------------------------------------------------------

    def _next_reply(self) -> Reply:
        return self._script.popleft() if self._script else self.default_reply

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=CIMultiDict(request.headers),
            body=body,
            peer=_peer(request),
        )
        self.requests.append(record)
        return record

    async def _exchange(self, request: web.Request, answer: Answer) -> web.StreamResponse:
        """Records the request, applies the scripted reply and watches for a client disconnect.

        `answer(request, record, reply)` produces the unfaulted response.
        """
        record = await self._record(request)
        reply = self._next_reply()
        try:
            await _pause(reply.response_delay_s)
            if reply.problem is not None:
                response: web.StreamResponse = self._error_response(reply.problem, reply)
            else:
                response = await answer(request, record, reply)
            record.completed = not (record.disconnected or record.cut)
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            record.disconnected = True
            raise
        finally:
            record._ended.set()

    async def _stream(
        self, request: web.Request, record: RecordedRequest, reply: Reply, frames: StreamFrames
    ) -> web.StreamResponse:
        """Writes a streamed answer frame by frame, with the reply's delays and faults."""
        response = web.StreamResponse(
            headers={"Content-Type": frames.content_type, **frames.headers}
        )
        await response.prepare(request)

        async def write(frame: bytes) -> None:
            # Waits while the client's socket is full: a client that stops reading stops it.
            await response.write(frame)
            record.bytes_sent += len(frame)

        for frame in frames.opening:
            await write(frame)
        count = len(frames.chunks)
        # Position `count` is after the last chunk; faults scripted past the answer land there.
        for position in range(count + 1):

            def due(after_chunks: int | None, position: int = position) -> bool:
                return after_chunks is not None and min(after_chunks, count) == position

            if due(reply.cut_after_chunks):
                return _cut_connection(request, record, response)
            if due(reply.malformed_after_chunks):
                await write(frames.malformed)
            if due(reply.hang_after_chunks):
                await _pause(math.inf)
            if reply.stream_problem is not None and due(reply.stream_problem_after_chunks):
                await write(self._problem_frame(reply.stream_problem))
                await response.write_eof()
                return response
            if position < count:
                await _pause(reply.first_token_delay_s if position == 0 else reply.token_delay_s)
                await write(frames.chunks[position])
        for frame in frames.closing:
            await write(frame)
        await response.write_eof()
        return response

    def _plan_answer(
        self,
        reply: Reply,
        requested_model: str,
        prompt_texts: Iterable[str],
        max_tokens: int | None,
    ) -> AnswerPlan:
        chunks = reply.chunks if reply.chunks is not None else self.answer_chunks
        truncated = max_tokens is not None and 0 < max_tokens < len(chunks)
        if truncated and max_tokens is not None:
            chunks = chunks[:max_tokens]
        return AnswerPlan(
            chunks=tuple(chunks),
            truncated_by_max_tokens=truncated,
            input_tokens=sum(len(text.split()) for text in prompt_texts),
            cached_input_tokens=reply.cached_input_tokens,
            model=reply.response_model or requested_model,
        )

    def _embedding(self, text: str) -> list[float]:
        """A deterministic unit vector for the text."""
        seed = hashlib.sha256(text.encode()).digest()
        raw: list[float] = []
        counter = 0
        while len(raw) < self.embedding_dimensions:
            block = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
            raw.extend(v / 2**31 for v in struct.unpack(">8i", block))
            counter += 1
        vector = raw[: self.embedding_dimensions]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=dict(headers or {}),
    )


def retry_after_headers(reply: Reply) -> dict[str, str]:
    if reply.retry_after_s is None:
        return {}
    return {
        "retry-after": str(math.ceil(reply.retry_after_s)),
        "retry-after-ms": str(int(reply.retry_after_s * 1000)),
    }


def request_id(prefix: str) -> str:
    """A fresh id in the provider's style, such as `req_...` or `chatcmpl-...`."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _cut_connection(
    request: web.Request, record: RecordedRequest, response: web.StreamResponse
) -> web.StreamResponse:
    # Closing the socket mid-body leaves the chunked transfer unfinished, exactly what a
    # client sees when a proxy or the provider drops the connection.
    record.cut = True
    if request.transport is not None:
        request.transport.abort()
    return response


async def _pause(delay_s: float) -> None:
    if math.isinf(delay_s):
        await asyncio.get_running_loop().create_future()
    elif delay_s > 0:
        await asyncio.sleep(delay_s)


def _peer(request: web.Request) -> tuple[str, int] | None:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    return (str(peername[0]), int(peername[1])) if peername else None
