"""Fixtures: fake upstreams on local ports and the provider wired to one of them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llmmesh.provider.v1 import provider_service_pb2_grpc
from llmmesh.testing.fake_upstreams import FakeAnthropic, FakeOllama, FakeOpenAI, FakeUpstream
from llmmesh_provider.testing import (
    TEST_KEY,
    TEST_KEY_ENV,
    instance_for,
    policy_with,
    running_provider,
)

FAKE_CLASSES: dict[str, type[FakeUpstream]] = {
    "openai": FakeOpenAI,
    "anthropic": FakeAnthropic,
    "ollama": FakeOllama,
}


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TEST_KEY_ENV, TEST_KEY)
    return TEST_KEY


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama() as fake:
        yield fake


@pytest.fixture(params=sorted(FAKE_CLASSES))
async def fake_upstream(request: pytest.FixtureRequest) -> AsyncIterator[FakeUpstream]:
    """Each kind of fake upstream in turn (or the kinds a test names, with indirect=True)."""
    async with FAKE_CLASSES[request.param]() as fake:
        yield fake


@pytest.fixture
async def provider_for(
    fake_upstream: FakeUpstream,
) -> AsyncIterator[provider_service_pb2_grpc.ProviderServiceStub]:
    """The provider with one instance, named "upstream", on the parametrized fake."""
    instance = instance_for(fake_upstream, api_key_env=TEST_KEY_ENV)
    async with running_provider(policy_with(instance)) as stub:
        yield stub
