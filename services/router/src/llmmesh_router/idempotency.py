"""Client request ids: a retry with the same id replays the first call's result, or joins it
while it is still running, and is never charged twice.

Ids are scoped by tenant and by RPC kind. A result is kept for `window_s` (10 minutes by
default), in this router process, within a byte budget: the oldest results go first, and a
result larger than a tenth of the budget is not kept (a retry of it runs again). A retry
whose request differs from the first call's is refused: the id names one request.

Kept in process memory on purpose: a retry through the same connection reaches the same
router replica, and a shared store would put a Redis round trip on every call with an id.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message

from llmmesh.runtime.errors import FieldViolation, RpcFailure

ResultT = TypeVar("ResultT")

DEFAULT_WINDOW_S = 600.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def fingerprint(request: Message) -> str:
    """What identifies the request apart from its id: every other field, byte for byte."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("client_request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def reused_id() -> RpcFailure:
    return RpcFailure(
        grpc.StatusCode.INVALID_ARGUMENT,
        "client_request_id was used for a different request within its window",
        reason="CLIENT_REQUEST_ID_REUSED",
        field_violations=[FieldViolation("client_request_id", "already names a different request")],
    )


@dataclasses.dataclass
class _Kept(Generic[ResultT]):
    fingerprint: str
    result: ResultT
    size: int
    expires_at: float


class IdempotencyStore(Generic[ResultT]):
    """Results by (tenant, id), and the calls still running under an id."""

    def __init__(
        self,
        size_of: Callable[[ResultT], int],
        window_s: float = DEFAULT_WINDOW_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._size_of = size_of
        self._window_s = window_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._kept: collections.OrderedDict[str, _Kept[ResultT]] = collections.OrderedDict()
        self._bytes = 0
        self._running: dict[str, tuple[str, asyncio.Future[ResultT]]] = {}
        # Streams running under an id: their fingerprint and how many callers share them.
        self._streams: dict[str, tuple[str, int]] = {}

    @staticmethod
    def key(tenant: str, client_request_id: str) -> str:
        return f"{tenant}\x00{client_request_id}"

    def kept(self, key: str, request_fingerprint: str) -> ResultT | None:
        """The result kept under the key, if any; refuses a different request."""
        self._expire()
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.fingerprint != request_fingerprint:
            raise reused_id()
        return kept.result

    def keep(self, key: str, request_fingerprint: str, result: ResultT) -> None:
        size = self._size_of(result)
        if size > self._max_bytes // 10:
            return
        self._drop(key)
        self._kept[key] = _Kept(request_fingerprint, result, size, self._clock() + self._window_s)
        self._bytes += size
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._kept)))

    async def once(
        self, key: str, request_fingerprint: str, run: Callable[[], Awaitable[ResultT]]
    ) -> tuple[ResultT, bool]:
        """The result for the key, and whether this call produced it: a kept result, the
        running call's (joined), or a new run whose result is kept."""
        kept = self.kept(key, request_fingerprint)
        if kept is not None:
            return kept, False
        running = self._running.get(key)
        if running is not None:
            if running[0] != request_fingerprint:
                raise reused_id()
            return await asyncio.shield(running[1]), False
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._running[key] = (request_fingerprint, future)
        try:
            result = await run()
        except BaseException as error:
            # Joined callers see the same failure; a later retry runs again.
            if isinstance(error, asyncio.CancelledError):
                error = RpcFailure(
                    grpc.StatusCode.UNAVAILABLE,
                    "the first call with this client_request_id was cancelled; retry",
                    reason="CLIENT_REQUEST_CANCELLED",
                )
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            self._running.pop(key, None)
        future.set_result(result)
        self.keep(key, request_fingerprint, result)
        return result, True

    def enter_stream(self, key: str, request_fingerprint: str) -> None:
        """Marks a caller of a stream under the key; refuses a different request."""
        running = self._streams.get(key)
        if running is not None and running[0] != request_fingerprint:
            raise reused_id()
        self._streams[key] = (request_fingerprint, (running[1] if running else 0) + 1)

    def leave_stream(self, key: str) -> None:
        request_fingerprint, callers = self._streams.pop(key)
        if callers > 1:
            self._streams[key] = (request_fingerprint, callers - 1)

    def _expire(self) -> None:
        now = self._clock()
        while self._kept:
            key, oldest = next(iter(self._kept.items()))
            if oldest.expires_at > now:
                return
            self._drop(key)

    def _drop(self, key: str) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._bytes -= kept.size
