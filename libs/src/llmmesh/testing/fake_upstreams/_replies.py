"""What a fake upstream answers to one request: a stream, a slowed or broken one, or an error."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from typing import Any

DEFAULT_ANSWER_CHUNKS: tuple[str, ...] = ("Hello", " from", " the", " fake", " upstream", ".")


class UpstreamProblem(enum.Enum):
    """A failure every fake renders in its own provider's real wire shape."""

    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 500
    BAD_GATEWAY = "bad_gateway"  # 502
    SERVICE_UNAVAILABLE = "service_unavailable"  # 503
    GATEWAY_TIMEOUT = "gateway_timeout"  # 504
    OVERLOADED = "overloaded"  # Anthropic 529; 503 elsewhere
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"  # 400
    CONTENT_FILTERED = "content_filtered"  # 400
    BAD_REQUEST = "bad_request"  # 400
    UNAUTHORIZED = "unauthorized"  # 401
    FORBIDDEN = "forbidden"  # 403
    MODEL_NOT_FOUND = "model_not_found"  # 404
    # 400s that say the model lacks a feature, in each provider's words.
    TOOLS_UNSUPPORTED = "tools_unsupported"
    IMAGES_UNSUPPORTED = "images_unsupported"
    SCHEMA_UNSUPPORTED = "schema_unsupported"


@dataclasses.dataclass(frozen=True)
class ToolCallScript:
    """A tool call the fake streams as its provider does; `id` None gets one in the
    provider's style (Ollama sends none)."""

    name: str
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        return json.dumps(dict(self.arguments))


@dataclasses.dataclass(frozen=True)
class Reply:
    """How the fake answers one request; the defaults give a prompt, complete, successful stream.

    Token counts below count answer chunks: the fake bills one output token per chunk.
    """

    # Answer with this HTTP error instead of a stream.
    problem: UpstreamProblem | None = None
    # Sent as `retry-after` (seconds) and `retry-after-ms` with a RATE_LIMITED problem.
    retry_after_s: float | None = None
    # The answer, chunk by chunk; None means the fake's default answer, or, for a request
    # that asks for a JSON schema, JSON that matches it (none when tool_calls are scripted).
    chunks: tuple[str, ...] | None = None
    # Tool calls streamed after the text, each call's arguments in pieces of
    # `argument_piece_chars` (Ollama sends each call whole, as it does).
    tool_calls: tuple[ToolCallScript, ...] = ()
    argument_piece_chars: int = 8
    # Reasoning streamed before the answer, piece by piece, apart from the text.
    reasoning: tuple[str, ...] = ()
    # Wait before sending the response headers; math.inf never answers (a hang).
    response_delay_s: float = 0.0
    # Wait between the stream's opening frames and the first answer chunk.
    first_token_delay_s: float = 0.0
    # Wait before each later answer chunk.
    token_delay_s: float = 0.0
    # Every fault below counts answer chunks of any kind: reasoning pieces, text chunks,
    # and tool-call frames (a call's first frame and each piece of its arguments).
    # Close the connection without finishing the body after this many answer chunks.
    cut_after_chunks: int | None = None
    # Send a frame that is not valid JSON after this many answer chunks.
    malformed_after_chunks: int | None = None
    # Send nothing more, keeping the connection open, after this many answer chunks.
    hang_after_chunks: int | None = None
    # Send the provider's in-stream error event (for this problem) after some answer chunks.
    stream_problem: UpstreamProblem | None = None
    stream_problem_after_chunks: int = 0
    # Prompt tokens the provider reports as served from its prompt cache, and written to it.
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    # Output tokens the provider reports as reasoning.
    reasoning_tokens: int = 0
    # The stop sequence the answer ended on, where the provider reports it.
    stop_sequence: str | None = None
    # The model the fake says answered; None echoes the requested model.
    response_model: str | None = None
    # Finish the answer as withheld by the provider's content filter.
    content_filtered_finish: bool = False


def rate_limited(retry_after_s: float | None = 1.0) -> Reply:
    """HTTP 429, with retry-after headers unless retry_after_s is None."""
    return Reply(problem=UpstreamProblem.RATE_LIMITED, retry_after_s=retry_after_s)


def http_error(problem: UpstreamProblem) -> Reply:
    """The problem's HTTP error response, in the provider's shape."""
    return Reply(problem=problem)


def slow_first_token(delay_s: float) -> Reply:
    """Headers at once, then a pause before the first answer chunk."""
    return Reply(first_token_delay_s=delay_s)


def slow_tokens(delay_s: float) -> Reply:
    """A pause before every answer chunk after the first."""
    return Reply(token_delay_s=delay_s)


def cut_stream(after_chunks: int = 2) -> Reply:
    """The connection drops mid-stream."""
    return Reply(cut_after_chunks=after_chunks)


def malformed_chunk(after_chunks: int = 1) -> Reply:
    """A frame that is not valid JSON mid-stream."""
    return Reply(malformed_after_chunks=after_chunks)


def hang(after_chunks: int | None = None) -> Reply:
    """Never answer (None), or stop sending after some chunks, keeping the connection open."""
    if after_chunks is None:
        return Reply(response_delay_s=math.inf)
    return Reply(hang_after_chunks=after_chunks)


def stream_error(problem: UpstreamProblem, after_chunks: int = 1) -> Reply:
    """The provider's in-stream error event after some answer chunks."""
    return Reply(stream_problem=problem, stream_problem_after_chunks=after_chunks)


def tool_calls(*calls: ToolCallScript, **reply: Any) -> Reply:
    """An answer that calls these tools (several calls are parallel calls)."""
    return Reply(tool_calls=calls, **reply)
