"""RouterService over gRPC: authenticates, then hands the request to the pipeline."""

from __future__ import annotations

import contextlib
from typing import TypeAlias

import grpc.aio

from llmmesh.router.v1 import router_pb2, router_service_pb2, router_service_pb2_grpc
from llmmesh_router.auth import ApiKeyAuthenticator
from llmmesh_router.completion import CompletionPipeline
from llmmesh_router.policy import RouterPolicy
from llmmesh_router.stalls import write_all

Context: TypeAlias = grpc.aio.ServicerContext[object, object]


class RouterServicer(router_service_pb2_grpc.RouterServiceServicer):
    def __init__(
        self, policy: RouterPolicy, pipeline: CompletionPipeline, *, stall_timeout_s: float
    ) -> None:
        self._policy = policy
        self._stall_timeout_s = stall_timeout_s
        self._authenticator = ApiKeyAuthenticator(policy.tenants)
        self._pipeline = pipeline

    def replace_policy(self, policy: RouterPolicy) -> None:
        self._policy = policy
        self._authenticator = ApiKeyAuthenticator(policy.tenants)
        self._pipeline.replace_policy(policy)

    async def StreamComplete(  # type: ignore[override]  # writes instead of yielding
        self, request: router_service_pb2.StreamCompleteRequest, context: Context
    ) -> None:
        tenant = self._authenticator.authenticate(context.invocation_metadata() or ())
        # Written, not yielded, so that a write can time out when the caller stops reading;
        # closing the pipeline at once cancels its upstream call and settles.
        events = self._pipeline.stream(request, tenant, context)
        async with contextlib.aclosing(events):
            await write_all(context, events, self._stall_timeout_s)

    async def Complete(
        self, request: router_service_pb2.CompleteRequest, context: Context
    ) -> router_service_pb2.CompleteResponse:
        tenant = self._authenticator.authenticate(context.invocation_metadata() or ())
        response = router_service_pb2.CompleteResponse()
        parts = []
        async for event in self._pipeline.stream(request, tenant, context):
            if event.HasField("summary"):
                response.summary.CopyFrom(event.summary)
            else:
                parts.append(event.delta.text)
        response.text = "".join(parts)
        return response

    async def ListModels(
        self, request: router_service_pb2.ListModelsRequest, context: Context
    ) -> router_service_pb2.ListModelsResponse:
        self._authenticator.authenticate(context.invocation_metadata() or ())
        return router_service_pb2.ListModelsResponse(
            models=[
                router_pb2.ModelInfo(
                    name=m.name,
                    provider=m.provider,
                    context_window=m.context_window,
                    input_price_per_1k=m.input_price_per_1k,
                    output_price_per_1k=m.output_price_per_1k,
                    capabilities=m.capabilities,
                )
                for m in self._policy.models
            ]
        )
