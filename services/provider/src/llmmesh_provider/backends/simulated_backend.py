"""A keyless upstream for demos, load tests and drills: deterministic, paced text; seeded faults.

The answer is derived from the conversation alone (same prompt, same text), while faults are
drawn from one seeded random sequence per instance, so a drill replays the same failures.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import random
import re
from collections.abc import AsyncGenerator, Sequence

import grpc

from llmmesh.runtime.errors import RpcFailure
from llmmesh_provider.backend import (
    ChatEvent,
    ChatRequest,
    Completion,
    EmbeddingBatch,
    FinishReason,
    TextChunk,
    Usage,
)
from llmmesh_provider.config import SimulatedInstance
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

_WORD = re.compile(r"\w+", re.UNICODE)


def simulated_answer(request: ChatRequest, answer_tokens: int) -> list[str]:
    """The answer's tokens: words from a fixed vocabulary, seeded by a hash of the conversation."""
    digest = hashlib.sha256(request.model.encode())
    for message in request.messages:
        digest.update(f"\x00{message.role}\x00{message.content}".encode())
    words = random.Random(digest.digest()).choices(VOCABULARY, k=answer_tokens)
    words[0] = words[0].capitalize()
    words[-1] += "."
    return [word if index == 0 else f" {word}" for index, word in enumerate(words)]


class SimulatedBackend:
    """Answers chats and embeds without any upstream."""

    def __init__(self, config: SimulatedInstance) -> None:
        self._config = config
        self._faults = random.Random(config.faults.seed)
        self._request_ids = itertools.count(1)

    async def aclose(self) -> None:
        return None

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        target = UpstreamTarget(self._config.name, BACKEND, request.model)
        config = self._config
        tokens = simulated_answer(request, config.answer_tokens)
        truncated = 0 < request.sampling.max_tokens < len(tokens)
        if truncated:
            tokens = tokens[: request.sampling.max_tokens]
        # Draws happen in the same order for every request so a seed fixes the whole drill.
        unavailable_roll, rate_limit_roll, cut_roll = (self._faults.random() for _ in range(3))
        cut_at = self._faults.randrange(1, len(tokens)) if len(tokens) > 1 else 1
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
        for index, token in enumerate(tokens):
            if cut and index == cut_at:
                raise stream_cut(target)
            if index and token_interval_s:
                await asyncio.sleep(token_interval_s)
            yield TextChunk(token)
        yield Completion(
            finish_reason=FinishReason.LENGTH if truncated else FinishReason.STOP,
            usage=Usage(
                input_tokens=sum(len(_WORD.findall(m.content)) for m in request.messages),
                output_tokens=len(tokens),
            ),
            provider_request_id=f"sim-{next(self._request_ids)}",
            response_model=request.model,
        )

    async def embed(self, texts: Sequence[str], model: str, timeout_s: float) -> EmbeddingBatch:
        dimensions = self._config.embedding_dimensions
        return EmbeddingBatch(
            vectors=[hashed_bag_of_words(text, dimensions) for text in texts], model=model
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
