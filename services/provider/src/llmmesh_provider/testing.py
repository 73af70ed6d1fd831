"""Test support: the provider served in-process on a loopback port, and stream readers.

Router and end-to-end tests reuse it to run a real provider against the fake upstreams.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_pb2, provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime.errors import ErrorDetails, error_details
from llmmesh.runtime.interceptors import ServerCallInterceptor
from llmmesh.testing.fake_upstreams import FakeUpstream
from llmmesh_provider.settings import ProviderSettings
from llmmesh_provider.wiring import build_servicer

# The variable that holds the fake upstreams' key in tests, and a key that must never leak.
TEST_KEY_ENV = "LLMMESH_TEST_UPSTREAM_KEY"
TEST_KEY = "sk-test-4f9a1c3e8b7d-secret"


@contextlib.asynccontextmanager
async def running_provider(
    policy_document: dict[str, Any], **settings: Any
) -> AsyncIterator[provider_service_pb2_grpc.ProviderServiceStub]:
    """The provider service wired from a policy document, served on a loopback port."""
    wiring = await build_servicer(ProviderSettings(**settings), policy_document)
    try:
        async with serving(wiring.servicer) as stub:
            yield stub
    finally:
        for close in wiring.closers:
            await close()


@contextlib.asynccontextmanager
async def serving(
    servicer: provider_service_pb2_grpc.ProviderServiceServicer,
) -> AsyncIterator[provider_service_pb2_grpc.ProviderServiceStub]:
    """A built servicer served on a loopback port (with the mesh's interceptor), and a stub."""
    server = grpc.aio.server(interceptors=[ServerCallInterceptor()])
    provider_service_pb2_grpc.add_ProviderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield provider_service_pb2_grpc.ProviderServiceStub(channel)
    finally:
        await server.stop(grace=None)


def instance_for(
    fake: FakeUpstream,
    name: str = "upstream",
    *,
    api_key_env: str = "",
    api_key_file: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """A `providers.instances` entry that points at the fake upstream; its key comes from
    the file when one is given, else from the variable ("" for no key)."""
    entry: dict[str, Any] = {"name": name, "backend": fake.kind, "base_url": fake.base_url}
    if fake.kind in ("openai", "anthropic"):
        if api_key_file:
            entry["api_key_file"] = api_key_file
        else:
            entry["api_key_env"] = api_key_env
    return entry | extra


def policy_with(*instances: dict[str, Any], **section: Any) -> dict[str, Any]:
    """A policy document whose `providers` section holds these instances."""
    return {"providers": {"instances": list(instances), **section}}


def generate_request(
    *,
    instance: str = "upstream",
    model: str = "test-model",
    prompt: str = "say hello to the mesh",
    system: str = "",
    max_tokens: int = 0,
) -> provider_service_pb2.GenerateRequest:
    messages = []
    if system:
        messages.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content=system))
    messages.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt))
    return provider_service_pb2.GenerateRequest(
        instance=instance,
        model=model,
        messages=messages,
        parameters=chat_pb2.GenerationParameters(max_tokens=max_tokens),
    )


@dataclasses.dataclass
class StreamOutcome:
    """What a Generate call delivered before it ended, and how it ended."""

    deltas: list[str] = dataclasses.field(default_factory=list)
    summary: provider_pb2.GenerationSummary | None = None
    error: ErrorDetails | None = None

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    @property
    def failure(self) -> ErrorDetails:
        """The error the stream ended with; fails if it ended cleanly."""
        if self.error is None or self.summary is not None:
            raise AssertionError(f"expected a stream that ends with an error, got {self}")
        return self.error


async def collect(
    stub: provider_service_pb2_grpc.ProviderServiceStub,
    request: provider_service_pb2.GenerateRequest,
    timeout_s: float | None = 10.0,
) -> StreamOutcome:
    """Reads a whole Generate stream, keeping the error it may end with."""
    outcome = StreamOutcome()
    try:
        async for response in stub.Generate(request, timeout=timeout_s):
            if response.HasField("delta"):
                outcome.deltas.append(response.delta.text)
            elif outcome.summary is not None:
                raise AssertionError("a stream carried a second summary")
            else:
                outcome.summary = response.summary
    except grpc.aio.AioRpcError as exc:
        outcome.error = error_details(exc)
    return outcome
