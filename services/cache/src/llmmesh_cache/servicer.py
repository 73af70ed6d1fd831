"""The CacheService gRPC handlers: validate, delegate to the AnswerCache, map failures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc
import grpc.aio
import redis.exceptions

from llmmesh.cache.v1 import cache_service_pb2, cache_service_pb2_grpc
from llmmesh.runtime.errors import RpcFailure, abort
from llmmesh_cache import validation
from llmmesh_cache.answer_cache import AnswerCache
from llmmesh_cache.policy import CachePolicy

ResponseT = TypeVar("ResponseT")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

_BACKEND_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
BACKEND_RETRY_AFTER_S = 1.0


class CacheServicer(cache_service_pb2_grpc.CacheServiceServicer):
    """Serves CacheService over an AnswerCache."""

    def __init__(self, cache: AnswerCache) -> None:
        self._cache = cache

    def reload_policy(self, document: dict[str, Any]) -> None:
        """Swaps in a new policy document's cache rules (on SIGHUP); a bad one raises."""
        self._cache.replace_policy(CachePolicy.from_document(document))

    async def _run(self, context: Context, call: Callable[[], Awaitable[ResponseT]]) -> ResponseT:
        try:
            return await call()
        except RpcFailure as failure:
            await abort(context, failure)
        except _BACKEND_ERRORS:
            await abort(
                context,
                RpcFailure(
                    grpc.StatusCode.UNAVAILABLE,
                    "the cache's entry store is unreachable",
                    reason="CACHE_BACKEND_UNAVAILABLE",
                    retry_after_s=BACKEND_RETRY_AFTER_S,
                ),
            )

    async def Lookup(
        self, request: cache_service_pb2.LookupRequest, context: Context
    ) -> cache_service_pb2.LookupResponse:
        async def call() -> cache_service_pb2.LookupResponse:
            validation.check_lookup(request, self._cache.policy)
            return await self._cache.lookup(request)

        return await self._run(context, call)

    async def Store(
        self, request: cache_service_pb2.StoreRequest, context: Context
    ) -> cache_service_pb2.StoreResponse:
        async def call() -> cache_service_pb2.StoreResponse:
            validation.check_store(request, self._cache.policy)
            return await self._cache.store(request)

        return await self._run(context, call)

    async def Invalidate(
        self, request: cache_service_pb2.InvalidateRequest, context: Context
    ) -> cache_service_pb2.InvalidateResponse:
        async def call() -> cache_service_pb2.InvalidateResponse:
            validation.check_invalidate(request, self._cache.policy)
            removed = await self._cache.invalidate(request.tenant, request.model, request.entry_id)
            return cache_service_pb2.InvalidateResponse(removed=removed)

        return await self._run(context, call)
