"""An optional second opinion on a semantic hit: a cheap catalog model asked "same request?".

For operators who accept a model call per new candidate pair in exchange for hits that
word alignment cannot see (or as an extra guard behind it). Verdicts are cached by a hash
of the pair and the judging model, so a pair is judged once per process while it stays in
the bounded cache. Any failure (provider down, timeout, an answer that is not yes or no,
too many calls in flight) counts as "not the same": the cache misses, it never guesses.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading

import cachetools
import grpc
import grpc.aio
import structlog

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh_cache.observability import CacheMetrics

_log = structlog.get_logger(__name__)

JUDGE_INSTRUCTIONS = (
    "You decide whether a cached answer may be reused. You get two requests to an "
    "assistant. Answer YES only if an answer that is correct and complete for the first "
    "request is also correct and complete, unchanged, for the second: same subject, same "
    "people, places, numbers, units, dates, times, versions, flags, directions, roles, "
    "negations and language. Answer NO otherwise, and whenever unsure. Reply with one "
    "word: YES or NO."
)
_VERDICT_BYTES = 160  # a digest key, a bool and the LRU's bookkeeping


class PairJudge:
    """Asks one provider model whether two prompts ask the same thing; verdicts cached."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        instance: str,
        model: str,
        timeout_s: float,
        max_in_flight: int,
        cache_bytes: int,
        metrics: CacheMetrics,
    ) -> None:
        self._metrics = metrics
        self._stub = provider_service_pb2_grpc.ProviderServiceStub(channel)
        self._instance = instance
        self._model = model
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._verdicts: cachetools.LRUCache[str, bool] = cachetools.LRUCache(
            maxsize=max(1, cache_bytes // _VERDICT_BYTES)
        )
        self._lock = threading.Lock()

    def _key(self, stored: str, asked: str) -> str:
        digest = hashlib.sha256()
        for part in (self._instance, self._model, stored, asked):
            digest.update(part.encode())
            digest.update(b"\x00")
        return digest.hexdigest()

    async def same_request(self, stored: str, asked: str) -> bool:
        """True only when the model answers YES; every failure is False."""
        key = self._key(stored, asked)
        with self._lock:
            cached = self._verdicts.get(key)
        if cached is not None:
            self._metrics.judged("cached")
            return cached
        if self._slots.locked():
            self._metrics.judged("busy")
            return False
        async with self._slots:
            verdict = await self._ask(stored, asked)
        if verdict is not None:
            with self._lock:
                self._verdicts[key] = verdict
        outcome = "error" if verdict is None else ("yes" if verdict else "no")
        self._metrics.judged(outcome)
        return bool(verdict)

    async def _ask(self, stored: str, asked: str) -> bool | None:
        request = provider_service_pb2.GenerateRequest(
            instance=self._instance,
            model=self._model,
            messages=[
                chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content=JUDGE_INSTRUCTIONS),
                chat_pb2.ChatMessage(
                    role=chat_pb2.ROLE_USER,
                    content=f"First request:\n<<<\n{stored}\n>>>\n\n"
                    f"Second request:\n<<<\n{asked}\n>>>",
                ),
            ],
            parameters=chat_pb2.GenerationParameters(temperature=0.0, max_tokens=3),
        )
        text = ""
        try:
            async with asyncio.timeout(self._timeout_s):
                async for event in self._stub.Generate(request, timeout=self._timeout_s):
                    if event.HasField("delta"):
                        text += event.delta.text
                        if len(text) > 64:
                            break
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "TIMEOUT"
            _log.warning("semantic judge failed", code=code)
            return None
        word = text.strip().strip(".!\"'").lower()
        if word.startswith("yes"):
            return True
        if word.startswith("no"):
            return False
        _log.warning("semantic judge gave no verdict", answer_chars=len(text))
        return None
