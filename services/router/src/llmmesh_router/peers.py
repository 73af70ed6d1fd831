"""Channels and stubs to the three services the router calls."""

from __future__ import annotations

import dataclasses

import grpc
import grpc.aio

from llmmesh.cache.v1 import cache_service_pb2_grpc
from llmmesh.provider.v1 import provider_service_pb2_grpc
from llmmesh.ratelimit.v1 import ratelimit_service_pb2_grpc
from llmmesh.runtime.channels import is_serving, open_channel
from llmmesh.runtime.errors import RpcFailure, error_details
from llmmesh.runtime.mesh_security import MeshCredentials
from llmmesh_router.settings import RouterSettings

PROVIDER_STREAM_WINDOW_BYTES = 64 * 1024


@dataclasses.dataclass
class Peers:
    ratelimiter: ratelimit_service_pb2_grpc.RateLimitServiceStub
    cache: cache_service_pb2_grpc.CacheServiceStub
    provider: provider_service_pb2_grpc.ProviderServiceStub
    channels: dict[str, grpc.aio.Channel]

    @classmethod
    def connect(cls, settings: RouterSettings) -> Peers:
        """Channels that present the router's mesh credentials (LLMMESH_ROUTER_TLS_*, token)."""
        credentials = MeshCredentials.from_settings(settings)
        channels = {
            "ratelimiter": open_channel(settings.ratelimiter_address, credentials=credentials),
            "cache": open_channel(settings.cache_address, credentials=credentials),
            # A caller that stops reading stops the provider after one window per stream.
            "provider": open_channel(
                settings.provider_address,
                credentials=credentials,
                stream_window_bytes=PROVIDER_STREAM_WINDOW_BYTES,
            ),
        }
        return cls(
            ratelimiter=ratelimit_service_pb2_grpc.RateLimitServiceStub(channels["ratelimiter"]),
            cache=cache_service_pb2_grpc.CacheServiceStub(channels["cache"]),
            provider=provider_service_pb2_grpc.ProviderServiceStub(channels["provider"]),
            channels=channels,
        )

    async def all_serving(self) -> bool:
        """The router serves only while every peer it needs reports SERVING."""
        for channel in self.channels.values():
            if not await is_serving(channel):
                return False
        return True

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


def peer_failure(peer: str, error: grpc.aio.AioRpcError) -> RpcFailure:
    """A peer's error as the router's own: rich details pass through unchanged; a peer that
    could not be reached at all gets a reason naming it."""
    details = error_details(error)
    if details.reason:
        return details.to_failure()
    return RpcFailure(
        details.code,
        f"{peer} call failed: {details.message}",
        reason=f"{peer.upper()}_UNAVAILABLE"
        if details.code == grpc.StatusCode.UNAVAILABLE
        else f"{peer.upper()}_{details.code.name}",
        metadata={"peer": peer},
    )
