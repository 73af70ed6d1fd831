"""The normalized chat and embedding contract every backend implements."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal, Protocol

MessageRole = Literal["system", "user", "assistant", "tool"]
ToolChoiceMode = Literal["auto", "none", "required", "named"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]


class Support(enum.Enum):
    """What a backend does with one request feature (see `features.py`)."""

    # Mapped faithfully onto the upstream's API.
    SUPPORTED = "supported"
    # Refused with INVALID_ARGUMENT naming the field: honouring it is not possible, and
    # leaving it out would change what the caller asked for.
    REFUSED = "refused"
    # Left out and named in the summary's ignored_parameters: the answer is still what the
    # caller asked for, only without the hint.
    DROPPED = "dropped"


class FinishReason(enum.Enum):
    """Why a generation stopped, in the gateway's words."""

    UNSPECIFIED = "unspecified"
    STOP = "stop"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    TOOL_CALLS = "tool_calls"


@dataclasses.dataclass(frozen=True)
class TextPart:
    text: str


@dataclasses.dataclass(frozen=True)
class ImagePart:
    """An image by URL, or the bytes of its file with their media type."""

    url: str = ""
    data: bytes = b""
    media_type: str = ""


@dataclasses.dataclass(frozen=True)
class ReasoningPart:
    """Reasoning an assistant streamed earlier, with the provider's signature of it."""

    text: str
    signature: str = ""


Part = TextPart | ImagePart | ReasoningPart


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A whole call an assistant made; arguments are a JSON object's text."""

    id: str
    name: str
    arguments_json: str


@dataclasses.dataclass(frozen=True)
class Message:
    """One validated turn of a conversation."""

    role: MessageRole
    parts: tuple[Part, ...] = ()
    name: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    # For a "tool" message: the call it answers.
    tool_call_id: str = ""

    @property
    def text(self) -> str:
        """The message's text parts, joined."""
        return "".join(part.text for part in self.parts if isinstance(part, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(part for part in self.parts if isinstance(part, ImagePart))

    @property
    def reasoning(self) -> tuple[ReasoningPart, ...]:
        return tuple(part for part in self.parts if isinstance(part, ReasoningPart))


@dataclasses.dataclass(frozen=True)
class Tool:
    """A function the model may call; `parameters` is its JSON Schema (an object schema)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    strict: bool = False


@dataclasses.dataclass(frozen=True)
class ToolChoice:
    mode: ToolChoiceMode
    # The tool to call, with mode "named".
    name: str = ""


@dataclasses.dataclass(frozen=True)
class ResponseFormat:
    """The shape the answer must take; `json_schema` is set only for kind "json_schema"."""

    kind: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: Mapping[str, Any] | None = None
    name: str = "answer"
    strict: bool = True


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Validated generation settings; max_tokens 0 means the backend's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: ResponseFormat = ResponseFormat()
    reasoning_effort: ReasoningEffort | None = None


@dataclasses.dataclass(frozen=True)
class Tools:
    """The tools offered and how the model may use them; `choice` None is the default."""

    offered: tuple[Tool, ...] = ()
    choice: ToolChoice | None = None
    # None is the backend's default (parallel calls allowed).
    parallel_calls: bool | None = None


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """A validated generation request for one backend."""

    model: str
    messages: tuple[Message, ...]
    sampling: Sampling
    # What is left of the caller's deadline, bounding every upstream wait.
    timeout_s: float
    tools: Tools = Tools()
    # The caller's end user (opaque id), sent where the backend has a field for it.
    user: str = ""


@dataclasses.dataclass(frozen=True)
class TextChunk:
    """A piece of answer text, exactly as the upstream sent it."""

    text: str


@dataclasses.dataclass(frozen=True)
class ToolCallChunk:
    """A piece of the `index`th tool call: id and name on its first piece, then arguments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclasses.dataclass(frozen=True)
class ReasoningChunk:
    """A piece of the model's reasoning, or the signature that closes a reasoning block."""

    text: str = ""
    signature: str = ""


@dataclasses.dataclass(frozen=True)
class Usage:
    """Tokens billed; input_tokens includes the cached and cache-written ones, output_tokens
    the reasoning ones."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclasses.dataclass(frozen=True)
class Completion:
    """The end of a successful generation."""

    finish_reason: FinishReason
    usage: Usage
    provider_request_id: str
    response_model: str
    # The stop sequence that ended the answer, where the upstream says which.
    stop_sequence: str = ""


Delta = TextChunk | ToolCallChunk | ReasoningChunk
ChatEvent = Delta | Completion


class ChatBackend(Protocol):
    """Streams one generation from an upstream.

    Yields deltas as they arrive and then exactly one Completion; any failure is raised as
    `llmmesh.runtime.errors.RpcFailure`, including a stream that ends without its end marker.
    `features` says, per request feature, whether the backend maps it, refuses it or drops
    it (see `features.py`); requests reach `stream_chat` with only what it maps.
    """

    @property
    def features(self) -> Mapping[str, Support]: ...

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]: ...

    async def aclose(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class EmbeddingBatch:
    """One vector per input, in input order; input_tokens 0 where the upstream reports none."""

    vectors: list[list[float]]
    model: str
    input_tokens: int = 0


class Embedder(Protocol):
    """Turns texts into vectors; failures are raised as RpcFailure. `dimensions` None means
    the instance's own length."""

    async def embed(
        self, texts: Sequence[str], model: str, timeout_s: float, dimensions: int | None = None
    ) -> EmbeddingBatch: ...

    async def aclose(self) -> None: ...


def coalesce(deltas: Sequence[Delta]) -> list[Delta]:
    """Adjacent pieces of the same thing joined: text with text, reasoning with reasoning,
    argument pieces of one tool call with each other; order across kinds is kept."""
    joined: list[Delta] = []
    for delta in deltas:
        last = joined[-1] if joined else None
        if isinstance(delta, TextChunk) and isinstance(last, TextChunk):
            joined[-1] = TextChunk(last.text + delta.text)
        elif (
            isinstance(delta, ReasoningChunk)
            and isinstance(last, ReasoningChunk)
            and not last.signature
        ):
            joined[-1] = ReasoningChunk(last.text + delta.text, delta.signature)
        elif (
            isinstance(delta, ToolCallChunk)
            and isinstance(last, ToolCallChunk)
            and last.index == delta.index
            and not delta.id
            and not delta.name
        ):
            joined[-1] = dataclasses.replace(last, arguments=last.arguments + delta.arguments)
        else:
            joined.append(delta)
    return joined
