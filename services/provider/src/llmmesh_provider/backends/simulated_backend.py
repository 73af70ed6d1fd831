"""A keyless upstream for demos, load tests and drills: deterministic, paced answers; seeded faults.

The answer is derived from the conversation alone (same prompt, same answer), while faults
are drawn from one seeded random sequence per instance, so a drill replays the same
failures. Offered tools, it calls the first one (or the one the tool choice names) with
arguments built from its schema, unless the last message is a tool's result, which it
answers in words; asked for JSON, it answers with JSON that matches the schema; asked to
reason, it streams a few words of reasoning first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import math
import random
import re
from collections.abc import AsyncGenerator, Sequence

import grpc

from llmmesh.runtime.errors import RpcFailure
from llmmesh.schema_examples import example_for
from llmmesh_provider.backend import (
    ChatEvent,
    ChatRequest,
    Completion,
    Delta,
    EmbeddingBatch,
    FinishReason,
    ReasoningChunk,
    TextChunk,
    Tool,
    ToolCallChunk,
    Usage,
)
from llmmesh_provider.config import SimulatedInstance
from llmmesh_provider.features import supporting
from llmmesh_provider.upstream_errors import UpstreamTarget, stream_cut

BACKEND = "simulated"

VOCABULARY = (
    "the", "mesh", "routes", "every", "request", "through", "a", "gateway", "that", "streams",
    "tokens", "back", "to", "its", "caller", "while", "limits", "cache", "and", "providers",
    "agree", "on", "what", "was", "spent", "latency", "stays", "low", "when", "answers",
    "repeat", "model", "context", "prompt", "reply", "fast", "steady", "simple", "clear",
    "useful", "result", "signal", "trace", "span", "quota", "tenant", "retry", "fallback",
    "budget", "window", "queue", "stream", "delta", "summary", "usage", "region", "replica",
    "health", "drain", "deadline", "status", "detail", "reason", "policy",
)  # fmt: skip

# Retry advice attached to a simulated rate limit.
SIMULATED_RETRY_AFTER_S = 1.0

# Words of reasoning streamed before the answer when a request asks for reasoning.
REASONING_WORDS = 8
# A JSON answer or a call's arguments go out in pieces of about this many characters.
JSON_PIECE_CHARS = 12
# Every feature is accepted: sampling settings leave the answer as it is (it is a function of
# the conversation), which is what a sampler at temperature 0 does too.
FEATURES = supporting()

_WORD = re.compile(r"\w+", re.UNICODE)


def conversation_digest(request: ChatRequest) -> bytes:
    """A hash of everything that shapes the answer: model, messages (images by their bytes or
    URL), tools and the requested format."""
    digest = hashlib.sha256(request.model.encode())
    for message in request.messages:
        digest.update(f"\x00{message.role}\x00{message.text}\x00{message.tool_call_id}".encode())
        for image in message.images:
            digest.update(image.data or image.url.encode())
        for call in message.tool_calls:
            digest.update(f"\x00{call.id}{call.name}{call.arguments_json}".encode())
    for tool in request.tools.offered:
        digest.update(f"\x00tool:{tool.name}".encode())
    digest.update(repr(request.sampling.response_format).encode())
    return digest.digest()


def simulated_words(seed: bytes, count: int) -> list[str]:
    """Words from a fixed vocabulary, as tokens with their leading spaces, forming a sentence."""
    words = random.Random(seed).choices(VOCABULARY, k=count)
    words[0] = words[0].capitalize()
    words[-1] += "."
    return [word if index == 0 else f" {word}" for index, word in enumerate(words)]


def simulated_answer(request: ChatRequest, answer_tokens: int) -> list[str]:
    """The answer's tokens: words from a fixed vocabulary, seeded by a hash of the conversation."""
    return simulated_words(conversation_digest(request), answer_tokens)


@dataclasses.dataclass(frozen=True)
class _Plan:
    deltas: list[Delta]
    finish_reason: FinishReason
    stop_sequence: str = ""


def _pieces(text: str) -> list[str]:
    return [text[i : i + JSON_PIECE_CHARS] for i in range(0, len(text), JSON_PIECE_CHARS)]


def _tool_to_call(request: ChatRequest) -> Tool | None:
    """The tool the simulated model calls, if it calls one now."""
    tools = request.tools
    mode = tools.choice.mode if tools.choice is not None else "auto"
    if not tools.offered or mode == "none":
        return None
    if mode == "named" and tools.choice is not None:
        return next(tool for tool in tools.offered if tool.name == tools.choice.name)
    if mode == "auto" and request.messages[-1].role == "tool":
        # The results are in: answer in words, so an agent loop ends.
        return None
    return tools.offered[0]


def _plan(request: ChatRequest, answer_tokens: int) -> _Plan:
    seed = conversation_digest(request)
    reasoning: list[Delta] = []
    if request.sampling.reasoning_effort not in (None, "none"):
        reasoning = [ReasoningChunk(word) for word in simulated_words(seed[::-1], REASONING_WORDS)]
    tool = _tool_to_call(request)
    if tool is not None:
        arguments = json.dumps(example_for(tool.parameters))
        call_id = f"call_sim_{hashlib.sha256(seed + tool.name.encode()).hexdigest()[:16]}"
        call: list[Delta] = [ToolCallChunk(0, id=call_id, name=tool.name)]
        call += [ToolCallChunk(0, arguments=piece) for piece in _pieces(arguments)]
        return _Plan(reasoning + call, FinishReason.TOOL_CALLS)
    form = request.sampling.response_format
    if form.kind != "text":
        words = "".join(simulated_words(seed, answer_tokens))
        value = example_for(form.json_schema or {}) if form.kind == "json_schema" else None
        text = json.dumps(value if form.kind == "json_schema" else {"answer": words})
        return _Plan(reasoning + [TextChunk(piece) for piece in _pieces(text)], FinishReason.STOP)
    tokens = simulated_words(seed, answer_tokens)
    limit, stop_sequence = _stop_at(tokens, request.sampling.stop)
    truncated = 0 < request.sampling.max_tokens < limit
    if truncated:
        limit = request.sampling.max_tokens
    answer: list[Delta] = [TextChunk(token) for token in tokens[:limit]]
    finish = FinishReason.LENGTH if truncated else FinishReason.STOP
    return _Plan(reasoning + answer, finish, "" if truncated else stop_sequence)


def _stop_at(tokens: list[str], stops: Sequence[str]) -> tuple[int, str]:
    """How many tokens come before the first stop sequence, and which one it was."""
    text = ""
    for index, token in enumerate(tokens):
        text += token
        for stop in stops:
            if stop in text:
                return index, stop
    return len(tokens), ""


class SimulatedBackend:
    """Answers chats and embeds without any upstream."""

    features = FEATURES

    def __init__(self, config: SimulatedInstance) -> None:
        self._config = config
        self._faults = random.Random(config.faults.seed)
        self._request_ids = itertools.count(1)

    async def aclose(self) -> None:
        return None

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        target = UpstreamTarget(self._config.name, BACKEND, request.model)
        config = self._config
        plan = _plan(request, config.answer_tokens)
        deltas = plan.deltas
        # Draws happen in the same order for every request so a seed fixes the whole drill.
        unavailable_roll, rate_limit_roll, cut_roll = (self._faults.random() for _ in range(3))
        cut_at = self._faults.randrange(1, len(deltas)) if len(deltas) > 1 else 1
        await asyncio.sleep(config.first_token_delay_ms / 1000)
        if unavailable_roll < config.faults.unavailable_rate:
            raise RpcFailure(
                grpc.StatusCode.UNAVAILABLE,
                f"{config.name} is unavailable (simulated fault)",
                reason="UPSTREAM_UNAVAILABLE",
                metadata=target.metadata(simulated="true"),
                retry_after_s=0.0,
            )
        if rate_limit_roll < config.faults.rate_limited_rate:
            raise RpcFailure(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{config.name} rate-limited the request (simulated fault)",
                reason="UPSTREAM_RATE_LIMITED",
                metadata=target.metadata(simulated="true"),
                retry_after_s=SIMULATED_RETRY_AFTER_S,
            )
        cut = cut_roll < config.faults.stream_cut_rate
        token_interval_s = 1 / config.tokens_per_s if config.tokens_per_s > 0 else 0.0
        for index, delta in enumerate(deltas):
            if cut and index == cut_at:
                raise stream_cut(target)
            if index and token_interval_s:
                await asyncio.sleep(token_interval_s)
            yield delta
        reasoning = sum(isinstance(delta, ReasoningChunk) for delta in deltas)
        yield Completion(
            finish_reason=plan.finish_reason,
            usage=Usage(
                input_tokens=sum(len(_WORD.findall(m.text)) for m in request.messages)
                + sum(len(m.images) for m in request.messages),
                output_tokens=len(deltas),
                reasoning_tokens=reasoning,
            ),
            provider_request_id=f"sim-{next(self._request_ids)}",
            response_model=request.model,
            stop_sequence=plan.stop_sequence,
        )

    async def embed(
        self, texts: Sequence[str], model: str, timeout_s: float, dimensions: int | None = None
    ) -> EmbeddingBatch:
        length = dimensions or self._config.embedding_dimensions
        return EmbeddingBatch(
            vectors=[hashed_bag_of_words(text, length) for text in texts],
            model=model,
            input_tokens=sum(len(_WORD.findall(text)) for text in texts),
        )


def hashed_bag_of_words(text: str, dimensions: int) -> list[float]:
    """A unit vector where each lowercased word adds ±1 to a hashed slot (the hashing trick).

    Texts that share words point the same way, which is enough for cache demos; texts with
    no words get the zero vector.
    """
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector
