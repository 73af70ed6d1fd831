"""Channels and stubs to the three services the router calls, and what their readiness
means for the router's own."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import grpc.aio

from llmmesh.cache.v1 import cache_service_pb2_grpc
from llmmesh.provider.v1 import provider_service_pb2_grpc
from llmmesh.ratelimit.v1 import ratelimit_service_pb2_grpc
from llmmesh.runtime.channels import open_channel
from llmmesh.runtime.errors import RpcFailure, error_details
from llmmesh.runtime.health import Readiness, combine, degraded, peer_readiness, unready
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

    async def readiness(self) -> Readiness:
        """Ready while the router can serve some request.

        Every request needs an admission from the ratelimiter and, unless the cache holds
        its answer, the provider: with no ready replica of either, requests fail, so the
        router is not ready. A ratelimiter that fails open is ready (degraded), so is the
        router. The cache is optional: without it every request is a miss, which costs money
        and not correctness, so a cache outage leaves the router ready, degraded.
        """
        ratelimiter, provider, cache = await asyncio.gather(
            *(peer_readiness(self.channels[name]) for name in ("ratelimiter", "provider", "cache"))
        )
        return combine(
            [
                _needed("ratelimiter", ratelimiter),
                _needed("provider", provider),
                _optional("cache", cache),
            ]
        )

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


def _needed(peer: str, readiness: Readiness) -> Readiness:
    if not readiness.ready:
        return unready(f"{peer} not ready ({readiness.reason})")
    return degraded(f"{peer}: {readiness.reason}") if readiness.reason else readiness


def _optional(peer: str, readiness: Readiness) -> Readiness:
    if not readiness.ready:
        return degraded(f"{peer} not ready ({readiness.reason}), serving without it")
    return degraded(f"{peer}: {readiness.reason}") if readiness.reason else readiness


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
