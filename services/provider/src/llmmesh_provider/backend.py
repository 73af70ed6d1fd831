"""The normalized chat and embedding contract every backend implements."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Literal, Protocol

MessageRole = Literal["system", "user", "assistant"]


class FinishReason(enum.Enum):
    """Why a generation stopped, in the gateway's words."""

    UNSPECIFIED = "unspecified"
    STOP = "stop"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    TOOL_CALLS = "tool_calls"


@dataclasses.dataclass(frozen=True)
class Message:
    """One validated turn of a conversation."""

    role: MessageRole
    content: str
    name: str = ""


@dataclasses.dataclass(frozen=True)
class ResponseFormat:
    """The shape the answer must take; `json_schema` is set only for kind "json_schema"."""

    kind: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Validated generation settings; max_tokens 0 means the backend's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: ResponseFormat = ResponseFormat()


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """A validated generation request for one backend."""

    model: str
    messages: tuple[Message, ...]
    sampling: Sampling
    # What is left of the caller's deadline, bounding every upstream wait.
    timeout_s: float


@dataclasses.dataclass(frozen=True)
class TextChunk:
    """A piece of answer text, exactly as the upstream sent it."""

    text: str


@dataclasses.dataclass(frozen=True)
class Usage:
    """Tokens billed; input_tokens includes the cached ones."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclasses.dataclass(frozen=True)
class Completion:
    """The end of a successful generation."""

    finish_reason: FinishReason
    usage: Usage
    provider_request_id: str
    response_model: str


ChatEvent = TextChunk | Completion


class ChatBackend(Protocol):
    """Streams one generation from an upstream.

    Yields text chunks as they arrive and then exactly one Completion; any failure is raised
    as `llmmesh.runtime.errors.RpcFailure`, including a stream that ends without its end marker.
    """

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]: ...

    async def aclose(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class EmbeddingBatch:
    """One vector per input, in input order."""

    vectors: list[list[float]]
    model: str


class Embedder(Protocol):
    """Turns texts into vectors; failures are raised as RpcFailure."""

    async def embed(self, texts: Sequence[str], model: str, timeout_s: float) -> EmbeddingBatch: ...

    async def aclose(self) -> None: ...
