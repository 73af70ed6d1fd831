"""A channel to a peer that is rebuilt when this service's certificates change.

gRPC Python cannot change the credentials of an open channel, so after a rotation new calls
go to a fresh channel made with the new certificates, and the old channel is closed once its
calls finished (or after a grace period). Stubs keep working: a multi-callable looks up the
current channel on every call, which costs a clock read while nothing changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from llmmesh.runtime.tls import CertificateSet, channel_credentials
from llmmesh.runtime.watched_files import WatchedFiles

# Streams on the old channel may run this long after a rotation before they are cancelled.
RETIRE_GRACE_S = 300.0

OpenChannel = Callable[[grpc.ChannelCredentials], grpc.aio.Channel]


class RenewingChannel(grpc.aio.Channel):  # type: ignore[misc]
    """Delegates to a channel opened with the current certificates; see the module docstring."""

    def __init__(
        self, certificates: WatchedFiles[CertificateSet], open_channel: OpenChannel
    ) -> None:
        self._certificates = certificates
        self._open_channel = open_channel
        self.generation = certificates.generation
        self._channel = open_channel(channel_credentials(certificates.value))
        # Channels replaced after a rotation, each closing in a task of its own.
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    def current(self) -> grpc.aio.Channel:
        generation = self._certificates.current_generation()
        if generation != self.generation:
            retired = self._channel
            self._channel = self._open_channel(channel_credentials(self._certificates.value))
            self.generation = generation
            task = asyncio.get_running_loop().create_task(retired.close(RETIRE_GRACE_S))
            self._retiring[task] = retired
            task.add_done_callback(self._retiring.pop)
        return self._channel

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _RenewingMultiCallable(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _RenewingMultiCallable(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _RenewingMultiCallable(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _RenewingMultiCallable(self, "stream_stream", method, args, kwargs)

    async def close(self, grace: float | None = None) -> None:
        retired = list(self._retiring.values())
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*(channel.close(grace) for channel in (self._channel, *retired)))

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.current().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def __aenter__(self) -> RenewingChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(None)


class _RenewingMultiCallable:
    """One RPC method of a RenewingChannel, bound again to each new inner channel."""

    def __init__(
        self,
        owner: RenewingChannel,
        kind: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._owner = owner
        self._kind = kind
        self._method = method
        self._args = args
        self._kwargs = kwargs
        self._generation = 0
        self._callable: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._owner.current()
        if self._generation != self._owner.generation:
            factory = getattr(channel, self._kind)
            self._callable = factory(self._method, *self._args, **self._kwargs)
            self._generation = self._owner.generation
        return self._callable(*args, **kwargs)
