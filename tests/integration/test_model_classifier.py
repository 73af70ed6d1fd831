"""The cheap-model classifier asks a real model (through the provider service, against a
fake upstream), caches its verdict, and falls back to the heuristic when the model fails."""

from __future__ import annotations

from llmmesh.common.v1 import chat_pb2
from llmmesh.testing.fake_upstreams import FakeOpenAI, Reply, UpstreamProblem, http_error
from llmmesh_provider.testing import instance_for, policy_with, running_provider
from llmmesh_router.classifiers import ModelClassifier
from llmmesh_router.complexity import Complexity
from llmmesh_router.deadline import Deadline
from llmmesh_router.policy import CatalogModel, ClassifierPolicy

CHEAP = CatalogModel(name="cheap", provider="upstream", upstream_model="cheap-upstream")


def _conversation(text: str) -> list[chat_pb2.ChatMessage]:
    return [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=text)]


async def test_verdict_comes_from_the_model_and_is_cached() -> None:
    async with FakeOpenAI() as fake:
        fake.enqueue(Reply(chunks=("Complex",)))
        async with running_provider(policy_with(instance_for(fake))) as provider:
            classifier = ModelClassifier(provider, CHEAP, ClassifierPolicy(kind="model"))
            question = _conversation("hello")  # the heuristic alone would say simple
            assert await classifier.classify(question, Deadline.after(5)) is Complexity.COMPLEX
            assert await classifier.classify(question, Deadline.after(5)) is Complexity.COMPLEX
        assert fake.request_count == 1
        sent = fake.last_request.body
        assert sent["model"] == "cheap-upstream"
        assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 3


async def test_failing_classifier_model_falls_back_to_the_heuristic() -> None:
    async with FakeOpenAI() as fake:
        fake.enqueue(http_error(UpstreamProblem.SERVER_ERROR))
        async with running_provider(policy_with(instance_for(fake))) as provider:
            classifier = ModelClassifier(provider, CHEAP, ClassifierPolicy(kind="model"))
            verdict = await classifier.classify(_conversation("hello"), Deadline.after(5))
        assert verdict is Complexity.SIMPLE
