"""One embedding request from admission to settlement: validate -> pick the catalog model
that embeds -> reserve its tokens -> embed at the provider -> settle, with cost and a span
like chat. A reservation is always settled with what the upstream counted, or released
when nothing ran.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import grpc.aio
import structlog
from opentelemetry.trace import Status, StatusCode

from llmmesh.common.v1 import chat_pb2
from llmmesh.policy import Tenant
from llmmesh.provider.v1 import provider_service_pb2
from llmmesh.router.v1 import router_pb2, router_service_pb2
from llmmesh.runtime import semconv
from llmmesh.runtime.errors import FieldViolation, RpcFailure, invalid_argument
from llmmesh.validation import list_length_violations
from llmmesh_router import observability
from llmmesh_router.capabilities import no_capable_model
from llmmesh_router.deadline import Deadline
from llmmesh_router.idempotency import IdempotencyStore, fingerprint
from llmmesh_router.peers import Peers, peer_failure
from llmmesh_router.policy import AUTO_MODEL, CatalogModel, RouterPolicy
from llmmesh_router.quota import reserve
from llmmesh_router.settings import RouterSettings
from llmmesh_router.settlement import Settler
from llmmesh_router.tokens import TOKENS_PER_MESSAGE, estimate_text_tokens
from llmmesh_router.validation import caller_field_violations, size_violations

log = structlog.get_logger(__name__)

MAX_DIMENSIONS = 65_536


class EmbeddingPipeline:
    def __init__(
        self, policy: RouterPolicy, peers: Peers, settings: RouterSettings, settler: Settler
    ) -> None:
        self._policy = policy
        self._peers = peers
        self._settings = settings
        self._settler = settler
        self._replies: IdempotencyStore[router_service_pb2.EmbedResponse] = IdempotencyStore(
            lambda response: response.ByteSize()
        )

    def replace_policy(self, policy: RouterPolicy) -> None:
        self._policy = policy

    async def embed(
        self,
        request: router_service_pb2.EmbedRequest,
        tenant: Tenant,
        context: grpc.aio.ServicerContext[object, object],
    ) -> router_service_pb2.EmbedResponse:
        violations = self._violations(request)
        if violations:
            raise invalid_argument(violations)
        if not request.client_request_id:
            return await self._embed(request, tenant, context)
        # A retry under the same id gets the first call's vectors, charged once.
        response, _ = await self._replies.once(
            self._replies.key(tenant.name, request.client_request_id),
            fingerprint(request),
            lambda: self._embed(request, tenant, context),
        )
        return response

    async def _embed(
        self,
        request: router_service_pb2.EmbedRequest,
        tenant: Tenant,
        context: grpc.aio.ServicerContext[object, object],
    ) -> router_service_pb2.EmbedResponse:
        model = self._model(request.model)
        deadline = Deadline.from_context(context, self._settings.default_timeout_s)
        request_id = uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id, tenant=tenant.name)
        observability.annotate({semconv.REQUEST_ID: request_id, semconv.TENANT: tenant.name})
        estimate = sum(
            TOKENS_PER_MESSAGE + estimate_text_tokens(len(text.encode())) for text in request.inputs
        )
        reservation_id = await reserve(
            self._peers, tenant, model.name, estimate, request_id, deadline
        )
        used: int | None = None
        try:
            response = await self._call(model, request, deadline)
            # Charged what the upstream counted; the estimate where it counts nothing.
            used = response.usage.input_tokens or estimate
        finally:
            settlement = (
                self._settler.release(reservation_id)
                if used is None
                else self._settler.settle(reservation_id, used)
            )
            # Shielded: a caller that hangs up does not undo the charge.
            await asyncio.shield(asyncio.ensure_future(settlement))
        usage = chat_pb2.Usage(input_tokens=used)
        cost = model.cost_usd(used, 0)
        attributes = {
            semconv.GEN_AI_OPERATION_NAME: "embeddings",
            semconv.GEN_AI_PROVIDER_NAME: model.provider,
            semconv.GEN_AI_RESPONSE_MODEL: model.name,
        }
        observability.annotate({**attributes, semconv.GEN_AI_USAGE_INPUT_TOKENS: used,
                                semconv.COST_USD: cost})  # fmt: skip
        observability.token_usage.record(used, {**attributes, semconv.GEN_AI_TOKEN_TYPE: "input"})
        observability.cost_usd.add(cost, attributes)
        return router_service_pb2.EmbedResponse(
            embeddings=[router_pb2.Embedding(values=e.values) for e in response.embeddings],
            dimensions=response.dimensions,
            summary=router_pb2.EmbedSummary(
                model=model.name, provider=model.provider, usage=usage, cached_inputs=0,
                attempts=1, cost_usd=cost, request_id=request_id,
            ),
        )  # fmt: skip

    def _violations(self, request: router_service_pb2.EmbedRequest) -> list[FieldViolation]:
        too_long = list_length_violations(request, self._settings.max_list_items)
        if too_long:
            return too_long
        violations = []
        if not request.model:
            violations.append(FieldViolation("model", 'required: a catalog model name or "auto"'))
        if not request.inputs:
            violations.append(FieldViolation("inputs", "at least one text is required"))
        violations += [
            FieldViolation(f"inputs[{index}]", "must not be empty")
            for index, text in enumerate(request.inputs)
            if not text
        ]
        violations += size_violations(request, self._settings.max_prompt_bytes)
        if request.HasField("dimensions") and not 0 < request.dimensions <= MAX_DIMENSIONS:
            violations.append(FieldViolation("dimensions", f"must be within [1, {MAX_DIMENSIONS}]"))
        violations += caller_field_violations(request)
        return violations

    def _model(self, requested: str) -> CatalogModel:
        """The catalog model that embeds: the one named, or for "auto" the first that
        declares embeddings."""
        policy = self._policy
        if requested == AUTO_MODEL:
            embedders = [m for m in policy.models if "embeddings" in m.capabilities]
            if not embedders:
                raise no_capable_model(["embeddings"], policy.models)
            return embedders[0]
        model = policy.model(requested)
        if model is None:
            known = ", ".join([AUTO_MODEL, *(m.name for m in policy.models)])
            raise invalid_argument([FieldViolation("model", f"unknown model; known: {known}")])
        if "embeddings" not in model.capabilities:
            raise no_capable_model(["embeddings"], [model])
        return model

    async def _call(
        self, model: CatalogModel, request: router_service_pb2.EmbedRequest, deadline: Deadline
    ) -> provider_service_pb2.EmbedResponse:
        with observability.tracer.start_as_current_span(
            f"embeddings {model.upstream_model}",
            attributes={
                semconv.GEN_AI_OPERATION_NAME: "embeddings",
                semconv.GEN_AI_PROVIDER_NAME: model.provider,
                semconv.GEN_AI_REQUEST_MODEL: model.upstream_model,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            call = provider_service_pb2.EmbedRequest(
                instance=model.provider, model=model.upstream_model, inputs=request.inputs
            )
            if request.HasField("dimensions"):
                call.dimensions = request.dimensions
            try:
                response: provider_service_pb2.EmbedResponse = await self._peers.provider.Embed(
                    call, timeout=deadline.remaining_s()
                )
            except grpc.aio.AioRpcError as error:
                failure: RpcFailure = peer_failure("provider", error)
                span.set_status(Status(StatusCode.ERROR, failure.reason))
                span.set_attribute(semconv.ERROR_TYPE, failure.reason)
                raise failure from error
            span.set_attributes(
                {
                    semconv.GEN_AI_RESPONSE_MODEL: response.model,
                    semconv.GEN_AI_USAGE_INPUT_TOKENS: response.usage.input_tokens,
                }
            )
            return response
