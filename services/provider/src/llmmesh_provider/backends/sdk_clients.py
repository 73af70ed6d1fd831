"""What the openai and anthropic backends share: how their SDK clients are built, and how
an SDK's transport errors become statuses (both SDKs name these errors alike)."""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, Generic, Protocol, Self, TypeVar

from llmmesh.runtime.errors import RpcFailure
from llmmesh_provider.http_tracing import traced_http_client
from llmmesh_provider.upstream_errors import UpstreamTarget, stream_cut, timed_out, unreachable


class SdkClient(Protocol):
    """What both SDKs' async clients offer for a key change and for closing."""

    def with_options(self, *, api_key: str) -> Self: ...

    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=SdkClient)


@dataclasses.dataclass(frozen=True)
class KeyedClient(Generic[ClientT]):
    """An SDK client and the key it sends, replaced together: a call takes the pair once, so
    a key swapped in mid-call neither changes its requests nor escapes its error redaction."""

    client: ClientT
    api_key: str


class KeyedSdkBackend(Generic[ClientT]):
    """The part of the openai and anthropic backends that holds their client and its key."""

    def __init__(self, client: ClientT, api_key: str) -> None:
        self._keyed = KeyedClient(client, api_key)

    def use_api_key(self, api_key: str) -> None:
        """Sends `api_key` from the next call on; calls in flight finish with the old one."""
        # A copy shares the connection pool, so swapping it opens no new connections.
        self._keyed = KeyedClient(self._keyed.client.with_options(api_key=api_key), api_key)

    async def aclose(self) -> None:
        # Every copy shares the one HTTP client that this closes.
        await self._keyed.client.close()


def sdk_client_arguments(*, api_key: str, base_url: str, timeout_s: float) -> dict[str, Any]:
    """Keyword arguments for `AsyncOpenAI` and `AsyncAnthropic` alike."""
    return {
        "api_key": api_key,
        "base_url": base_url,
        # Retries and fallbacks are the router's decision, made once with the deadline in view.
        "max_retries": 0,
        "timeout": timeout_s,
        "http_client": traced_http_client(),
    }


def transport_failure(
    sdk: ModuleType, target: UpstreamTarget, exc: Exception, timeout_s: float, *, body_started: bool
) -> RpcFailure | None:
    """The status for an SDK timeout or connection error; None for any other error."""
    if isinstance(exc, sdk.APITimeoutError):
        return timed_out(target, timeout_s)
    if isinstance(exc, sdk.APIConnectionError):
        return stream_cut(target) if body_started else unreachable(target)
    return None
