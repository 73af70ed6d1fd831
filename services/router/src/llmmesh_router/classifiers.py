"""Judges how hard a prompt is for "auto" routing: by heuristic, or by asking a cheap model.

The model classifier caches its verdict per conversation, so a repeated prompt costs one
classification; when the model cannot answer in time it falls back to the heuristic.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Protocol

import grpc
import grpc.aio
import structlog

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh_router.complexity import Complexity, classify
from llmmesh_router.deadline import Deadline
from llmmesh_router.policy import CatalogModel, ClassifierPolicy

log = structlog.get_logger(__name__)

CLASSIFIER_TIMEOUT_S = 2.0
INSTRUCTIONS = (
    "Rate how hard the user's request is for a language model. Answer with exactly one "
    "word: simple, moderate or complex."
)


class Classifier(Protocol):
    async def classify(
        self, messages: list[chat_pb2.ChatMessage], deadline: Deadline
    ) -> Complexity: ...


class HeuristicClassifier:
    async def classify(
        self, messages: list[chat_pb2.ChatMessage], deadline: Deadline
    ) -> Complexity:
        return classify(messages)


class ModelClassifier:
    def __init__(
        self,
        provider: provider_service_pb2_grpc.ProviderServiceStub,
        model: CatalogModel,
        policy: ClassifierPolicy,
    ) -> None:
        self._provider = provider
        self._model = model
        self._ttl_s = policy.cache_ttl_s
        self._capacity = policy.cache_entries
        self._verdicts: OrderedDict[str, tuple[float, Complexity]] = OrderedDict()

    async def classify(
        self, messages: list[chat_pb2.ChatMessage], deadline: Deadline
    ) -> Complexity:
        key = _conversation_key(messages)
        cached = self._verdicts.get(key)
        if cached is not None and cached[0] > time.monotonic():
            self._verdicts.move_to_end(key)
            return cached[1]
        verdict = await self._ask(messages, min(deadline.remaining_s(), CLASSIFIER_TIMEOUT_S))
        self._verdicts[key] = (time.monotonic() + self._ttl_s, verdict)
        while len(self._verdicts) > self._capacity:
            self._verdicts.popitem(last=False)
        return verdict

    async def _ask(self, messages: list[chat_pb2.ChatMessage], timeout_s: float) -> Complexity:
        last_user = next(
            (m.content for m in reversed(messages) if m.role == chat_pb2.ROLE_USER), ""
        )
        request = provider_service_pb2.GenerateRequest(
            instance=self._model.provider,
            model=self._model.upstream_model,
            messages=[
                chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content=INSTRUCTIONS),
                chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=last_user),
            ],
            parameters=chat_pb2.GenerationParameters(max_tokens=3, temperature=0.0),
        )
        text = []
        try:
            async for event in self._provider.Generate(request, timeout=timeout_s):
                if event.HasField("delta"):
                    text.append(event.delta.text)
        except grpc.aio.AioRpcError as error:
            log.warning("classifier_failed", code=error.code().name)
            return classify(messages)
        answer = "".join(text).strip().lower()
        for complexity in Complexity:
            if complexity.name.lower() in answer:
                return complexity
        return classify(messages)


def _conversation_key(messages: list[chat_pb2.ChatMessage]) -> str:
    digest = hashlib.sha256()
    for message in messages:
        digest.update(message.SerializeToString(deterministic=True))
    return digest.hexdigest()
