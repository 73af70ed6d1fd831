"""One completion from admission to settlement: the router's request pipeline.

validate -> route (model chain) -> reserve quota -> cache lookup -> generate down the
chain (shared with identical requests in flight) -> store -> settle. A reservation is
always settled with what was used or released when nothing ran, cancellation included.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable

import grpc
import grpc.aio
import structlog
from opentelemetry.util.types import AttributeValue

from llmmesh.cache.v1 import cache_pb2, cache_service_pb2
from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.policy import Tenant
from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2
from llmmesh.router.v1 import router_pb2, router_service_pb2
from llmmesh.runtime import semconv
from llmmesh.runtime.errors import FieldViolation, RpcFailure, invalid_argument
from llmmesh_router import observability
from llmmesh_router.attempts import AllModelsFailed, ChainRunner, Delta, Finished, GenerationEvent
from llmmesh_router.breaker import BreakerRegistry, ProbeClaims
from llmmesh_router.classifiers import Classifier
from llmmesh_router.coalescing import Coalescer, FellBehind
from llmmesh_router.deadline import Deadline
from llmmesh_router.peers import Peers, peer_failure
from llmmesh_router.policy import AUTO_MODEL, RouterPolicy
from llmmesh_router.quota import denial_failure
from llmmesh_router.routing import PRIORITY_NAMES, RouteDecision, choose_chain
from llmmesh_router.settings import RouterSettings
from llmmesh_router.settlement import Settler
from llmmesh_router.stalls import STREAM_BUFFER_BYTES, stalled_failure
from llmmesh_router.tokens import estimate_prompt_tokens, estimate_text_tokens
from llmmesh_router.validation import CompletionRequest, find_violations

log = structlog.get_logger(__name__)

Event = router_service_pb2.StreamCompleteResponse
HIT_STATUSES = (caching_pb2.CACHE_STATUS_EXACT, caching_pb2.CACHE_STATUS_SEMANTIC)
# Beyond the settle retry budget, time for the last attempt under way to answer.
FLUSH_SLACK_S = 5.0


class CompletionPipeline:
    def __init__(
        self,
        policy: RouterPolicy,
        peers: Peers,
        settings: RouterSettings,
        breakers: BreakerRegistry,
        classifier: Classifier,
        probe_claims: ProbeClaims | None = None,
    ) -> None:
        self._policy = policy
        self._peers = peers
        self._settings = settings
        self._breakers = breakers
        self._classifier = classifier
        self._runner = ChainRunner(
            peers.provider, breakers, lambda: self._policy, probe_claims=probe_claims
        )
        self._coalescer: Coalescer[GenerationEvent] = Coalescer(
            weigh=_text_bytes, max_buffered=STREAM_BUFFER_BYTES
        )
        self._settler = Settler(peers.ratelimiter, budget_s=settings.settle_retry_budget_s)
        self._background: set[asyncio.Task[None]] = set()
        self._streams = 0
        self._no_streams = asyncio.Event()
        self._no_streams.set()

    def replace_policy(self, policy: RouterPolicy) -> None:
        self._policy = policy

    async def stream(
        self,
        request: CompletionRequest,
        tenant: Tenant,
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncGenerator[Event, None]:
        """The completion's events, measured: in-flight count, time to first text, duration."""
        started = time.monotonic()
        first_text_seen = False
        outcome: dict[str, AttributeValue] = {semconv.GEN_AI_OPERATION_NAME: "chat"}
        observability.streams_in_flight.add(1)
        self._streams += 1
        self._no_streams.clear()
        try:
            async for event in self._events(request, tenant, context):
                if not first_text_seen and event.HasField("delta"):
                    first_text_seen = True
                    observability.time_to_first_chunk_s.record(time.monotonic() - started)
                if event.HasField("summary"):
                    outcome.update(_record_summary(event.summary))
                yield event
        except RpcFailure as failure:
            outcome[semconv.ERROR_TYPE] = failure.reason
            raise
        except asyncio.CancelledError:
            outcome[semconv.ERROR_TYPE] = "CANCELLED"
            raise
        finally:
            observability.streams_in_flight.add(-1)
            observability.operation_duration_s.record(time.monotonic() - started, outcome)
            self._streams -= 1
            if not self._streams:
                self._no_streams.set()

    async def _events(
        self,
        request: CompletionRequest,
        tenant: Tenant,
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[Event]:
        violations = find_violations(
            request,
            max_prompt_bytes=self._settings.max_prompt_bytes,
            max_list_items=self._settings.max_list_items,
        )
        if violations:
            raise invalid_argument(violations)
        deadline = Deadline.from_context(context, self._settings.default_timeout_s)
        request_id = uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id, tenant=tenant.name)
        observability.annotate({semconv.REQUEST_ID: request_id, semconv.TENANT: tenant.name})
        parameters = self._effective_parameters(request.parameters)
        prompt_tokens = estimate_prompt_tokens(request, len(request.messages))
        decision = await self._route(request, prompt_tokens + parameters.max_tokens, deadline)
        reserved_model = decision.chain[0].name if decision.chain else request.model
        scope = cache_pb2.CacheScope(
            tenant=tenant.name, model=_cache_model(request.model, decision),
            messages=request.messages, parameters=parameters,
        )  # fmt: skip
        # A lookup changes nothing, so it runs alongside the reservation to save a hop;
        # a denial still wins over a hit.
        lookup = asyncio.ensure_future(self._lookup(scope, request.cache, deadline))
        try:
            reservation_id = await self._reserve(
                tenant, reserved_model, prompt_tokens + parameters.max_tokens, request_id, deadline
            )
        except BaseException:
            lookup.cancel()
            # Its outcome no longer matters; retrieving it keeps asyncio from reporting it.
            lookup.add_done_callback(lambda task: task.cancelled() or task.exception())
            raise
        settlement: Awaitable[None] | None = None
        streamed_chars = 0
        # A caller that joined another's flight cost nothing upstream.
        started_flight = True
        try:
            hit = await lookup
            if hit is not None:
                async for event in self._replay(hit, request_id, degraded=False):
                    yield event
                settlement = self._settler.settle(reservation_id, 0)
                return
            if not decision.chain:
                failure = RpcFailure(
                    grpc.StatusCode.UNAVAILABLE,
                    "every model for this request has an open circuit: "
                    + ", ".join(decision.skipped_for_circuit),
                    reason="NO_MODEL_AVAILABLE",
                    metadata={"skipped": ",".join(decision.skipped_for_circuit)},
                )
                async for event in self._degraded_or_raise(failure, scope, request_id, deadline):
                    yield event
                settlement = self._settler.settle(reservation_id, 0)
                return
            chain = decision.chain

            def produce() -> AsyncGenerator[GenerationEvent, None]:
                return self._runner.run(chain, list(request.messages), parameters, deadline)

            flight = (
                self._coalescer.stream(_coalescing_key(scope, request), produce)
                if _coalescable(request)
                else _as_own(produce())
            )
            chunks: list[str] = []
            try:
                async for generated, started_here in flight:
                    started_flight = started_here
                    if isinstance(generated, Delta):
                        chunks.append(generated.text)
                        streamed_chars += len(generated.text)
                        yield Event(delta=chat_pb2.TextDelta(text=generated.text))
                        continue
                    yield Event(summary=self._summary(generated, request, request_id))
                    usage = generated.summary.usage
                    used = usage.input_tokens + usage.output_tokens if started_here else 0
                    settlement = self._settler.settle(reservation_id, used)
                    if started_here and request.cache.mode != caching_pb2.CACHE_MODE_BYPASS:
                        self._in_background(self._store(scope, chunks, generated, request.cache))
            except AllModelsFailed as failure:
                async for event in self._degraded_or_raise(failure, scope, request_id, deadline):
                    yield event
                settlement = self._settler.settle(reservation_id, 0)
            except FellBehind as error:
                observability.streams_stalled.add(1)
                raise stalled_failure(len(chunks), streamed_chars) from error
        finally:
            if settlement is None:
                # Failed, cancelled or stalled: what reached the router was paid for
                # upstream; a request that produced nothing is released. Done in the
                # background so a cancelled caller is not kept waiting.
                if streamed_chars:
                    used = (
                        prompt_tokens + estimate_text_tokens(streamed_chars)
                        if started_flight
                        else 0
                    )
                    settlement = self._settler.settle(reservation_id, used)
                else:
                    settlement = self._settler.release(reservation_id)
            self._in_background(settlement)

    async def aclose(self) -> None:
        """On shutdown, after the server stopped: waits for the streams it cancelled to
        finish ending, then for the stores and settlements they left, within the settle
        retry budget, so no settlement is lost to the exit."""
        try:
            async with asyncio.timeout(self._settings.settle_retry_budget_s + FLUSH_SLACK_S):
                await self._no_streams.wait()
                while self._background:
                    await asyncio.gather(*self._background, return_exceptions=True)
        except TimeoutError:
            log.warning("shutdown_flush_incomplete", pending=len(self._background))

    async def _route(
        self, request: CompletionRequest, needed_tokens: int, deadline: Deadline
    ) -> RouteDecision:
        policy = self._policy
        if request.model != AUTO_MODEL and policy.model(request.model) is None:
            # The name is not echoed back: no text of a request goes into an error.
            known = ", ".join([AUTO_MODEL, *(m.name for m in policy.models)])
            raise invalid_argument([FieldViolation("model", f"unknown model; known: {known}")])
        priority = PRIORITY_NAMES.get(request.priority, policy.routing.default_priority)
        complexity = (
            await self._classifier.classify(list(request.messages), deadline)
            if request.model == AUTO_MODEL
            else None
        )
        decision = choose_chain(
            policy,
            requested_model=request.model,
            priority=priority,
            complexity=complexity,
            needed_tokens=needed_tokens,
            circuit_open=lambda m: self._breakers.get(m.provider, m.upstream_model).is_open(),
        )
        if not decision.chain and not decision.skipped_for_circuit:
            largest = max(m.context_window for m in policy.models)
            raise RpcFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request needs about {needed_tokens} tokens (prompt plus max_tokens); "
                f"the largest context window available is {largest}",
                reason="CONTEXT_LENGTH_EXCEEDED",
                field_violations=[FieldViolation("messages", "too long for every model")],
            )
        route: dict[str, AttributeValue] = {
            semconv.ROUTE_PRIORITY: decision.priority,
            semconv.ROUTE_COMPLEXITY: decision.complexity.level if decision.complexity else "",
            semconv.ROUTE_CHAIN: [m.name for m in decision.chain],
            semconv.ROUTE_SKIPPED_CIRCUIT_OPEN: list(decision.skipped_for_circuit),
        }
        observability.annotate(route)
        log.info("route", **route)
        return decision

    def _effective_parameters(
        self, parameters: chat_pb2.GenerationParameters
    ) -> chat_pb2.GenerationParameters:
        effective = chat_pb2.GenerationParameters()
        effective.CopyFrom(parameters)
        if effective.max_tokens == 0:
            effective.max_tokens = self._settings.default_max_tokens
        return effective

    async def _reserve(
        self, tenant: Tenant, model: str, estimate: int, request_id: str, deadline: Deadline
    ) -> str:
        try:
            response = await self._peers.ratelimiter.Reserve(
                ratelimit_service_pb2.ReserveRequest(
                    tenant=tenant.name, model=model, estimated_tokens=estimate,
                    request_id=request_id,
                ),
                timeout=deadline.remaining_s(),
            )  # fmt: skip
        except grpc.aio.AioRpcError as error:
            raise peer_failure("ratelimiter", error) from error
        allowed = response.decision == ratelimit_pb2.DECISION_ALLOW
        observability.annotate(
            {
                semconv.RATELIMIT_DECISION: "allow" if allowed else "deny",
                semconv.RATELIMIT_DENIED_LIMIT: response.denied_limit,
            }
        )
        if not allowed:
            observability.ratelimit_denials.add(
                1, {semconv.RATELIMIT_DENIED_LIMIT: response.denied_limit}
            )
            raise denial_failure(response, tenant.name, model)
        return str(response.reservation_id)

    async def _lookup(
        self,
        scope: cache_pb2.CacheScope,
        control: router_pb2.CacheControl,
        deadline: Deadline,
        *,
        degraded_threshold: float | None = None,
    ) -> cache_service_pb2.LookupResponse | None:
        if control.mode == caching_pb2.CACHE_MODE_BYPASS:
            return None
        request = cache_service_pb2.LookupRequest(
            scope=scope, mode=control.mode,
            allow_nonzero_temperature=control.allow_nonzero_temperature,
        )  # fmt: skip
        if degraded_threshold is not None:
            request.mode = caching_pb2.CACHE_MODE_SEMANTIC
            request.similarity_threshold = degraded_threshold
        elif control.HasField("similarity_threshold"):
            request.similarity_threshold = control.similarity_threshold
        try:
            response = await self._peers.cache.Lookup(request, timeout=deadline.remaining_s())
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise peer_failure("cache", error) from error
            # A cache outage costs money, not correctness: answer from the provider.
            log.warning("cache_lookup_failed", code=error.code().name)
            return None
        status = caching_pb2.CacheStatus.Name(response.status).removeprefix("CACHE_STATUS_")
        observability.annotate(
            {semconv.CACHE_STATUS: status.lower(), semconv.CACHE_SIMILARITY: response.similarity}
        )
        observability.cache_lookups.add(1, {semconv.CACHE_STATUS: status.lower()})
        return response if response.status in HIT_STATUSES else None

    async def _degraded_or_raise(
        self,
        failure: RpcFailure,
        scope: cache_pb2.CacheScope,
        request_id: str,
        deadline: Deadline,
    ) -> AsyncIterator[Event]:
        degraded = self._policy.routing.degraded
        hit = None
        if degraded.serve_from_cache:
            hit = await self._lookup(
                scope, router_pb2.CacheControl(), deadline,
                degraded_threshold=degraded.similarity_threshold,
            )  # fmt: skip
        if hit is None:
            raise failure
        log.warning("degraded_answer", reason=failure.reason)
        async for event in self._replay(hit, request_id, degraded=True):
            yield event

    async def _replay(
        self, hit: cache_service_pb2.LookupResponse, request_id: str, *, degraded: bool
    ) -> AsyncIterator[Event]:
        for chunk in hit.answer.chunks:
            yield Event(delta=chat_pb2.TextDelta(text=chunk))
        yield Event(
            summary=router_pb2.CompletionSummary(
                model=hit.answer.model, provider=hit.answer.provider,
                finish_reason=hit.answer.finish_reason, usage=hit.answer.usage,
                cache_status=hit.status, attempts=0, cost_usd=0.0, request_id=request_id,
                degraded=degraded, cache_similarity=hit.similarity,
            )
        )  # fmt: skip

    async def _store(
        self,
        scope: cache_pb2.CacheScope,
        chunks: list[str],
        finished: Finished,
        control: router_pb2.CacheControl,
    ) -> None:
        answer = cache_pb2.CachedAnswer(
            chunks=chunks, finish_reason=finished.summary.finish_reason,
            usage=finished.summary.usage, model=finished.model.name,
            provider=finished.model.provider,
        )  # fmt: skip
        try:
            await self._peers.cache.Store(
                cache_service_pb2.StoreRequest(
                    scope=_answered_scope(scope, finished), answer=answer,
                    allow_nonzero_temperature=control.allow_nonzero_temperature,
                    mode=control.mode,
                ),
                timeout=5.0,
            )  # fmt: skip
        except grpc.aio.AioRpcError as error:
            log.warning("cache_store_failed", code=error.code().name)

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _summary(
        finished: Finished, request: CompletionRequest, request_id: str
    ) -> router_pb2.CompletionSummary:
        usage = finished.summary.usage
        bypass = request.cache.mode == caching_pb2.CACHE_MODE_BYPASS
        return router_pb2.CompletionSummary(
            model=finished.model.name, provider=finished.model.provider,
            finish_reason=finished.summary.finish_reason, usage=usage,
            cache_status=(
                caching_pb2.CACHE_STATUS_BYPASS if bypass else caching_pb2.CACHE_STATUS_MISS
            ),
            attempts=finished.attempts,
            cost_usd=finished.model.cost_usd(usage.input_tokens, usage.output_tokens),
            request_id=request_id,
        )  # fmt: skip


def _record_summary(summary: router_pb2.CompletionSummary) -> dict[str, AttributeValue]:
    """Puts the outcome on the request's span and metrics; returns the metric attributes."""
    attributes: dict[str, AttributeValue] = {
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_PROVIDER_NAME: summary.provider,
        semconv.GEN_AI_RESPONSE_MODEL: summary.model,
    }
    observability.annotate(
        {
            **attributes,
            semconv.GEN_AI_USAGE_INPUT_TOKENS: summary.usage.input_tokens,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS: summary.usage.output_tokens,
            semconv.ATTEMPTS: summary.attempts,
            semconv.COST_USD: summary.cost_usd,
            semconv.DEGRADED: summary.degraded,
        }
    )
    for token_type, count in (
        ("input", summary.usage.input_tokens),
        ("output", summary.usage.output_tokens),
    ):
        observability.token_usage.record(
            count, {**attributes, semconv.GEN_AI_TOKEN_TYPE: token_type}
        )
    observability.cost_usd.add(summary.cost_usd, attributes)
    return attributes


def _text_bytes(event: GenerationEvent) -> int:
    return len(event.text.encode()) if isinstance(event, Delta) else 0


async def _as_own(
    events: AsyncIterator[GenerationEvent],
) -> AsyncIterator[tuple[GenerationEvent, bool]]:
    async for event in events:
        yield event, True


def _cache_model(requested: str, decision: RouteDecision) -> str:
    """The model a cache entry is kept under. For "auto" it is the model routing chose
    ("auto:sim-large"), so two priorities or complexities never share an answer; with every
    circuit open it is the model that would have answered, for a degraded lookup."""
    if requested != AUTO_MODEL:
        return requested
    chosen = [model.name for model in decision.chain] or list(decision.skipped_for_circuit)
    return f"{AUTO_MODEL}:{chosen[0]}" if chosen else AUTO_MODEL


def _answered_scope(scope: cache_pb2.CacheScope, finished: Finished) -> cache_pb2.CacheScope:
    """The scope an "auto" answer is stored under: the model that answered it, which is
    not the chosen one when a fallback answered."""
    if not scope.model.startswith(f"{AUTO_MODEL}:"):
        return scope
    stored = cache_pb2.CacheScope()
    stored.CopyFrom(scope)
    stored.model = f"{AUTO_MODEL}:{finished.model.name}"
    return stored


def _coalescable(request: CompletionRequest) -> bool:
    """Requests the cache could answer are the ones identical callers may share."""
    if request.cache.mode == caching_pb2.CACHE_MODE_BYPASS:
        return False
    parameters = request.parameters
    deterministic = not parameters.HasField("temperature") or parameters.temperature == 0
    return deterministic or request.cache.allow_nonzero_temperature


def _coalescing_key(scope: cache_pb2.CacheScope, request: CompletionRequest) -> str:
    digest = hashlib.sha256(scope.SerializeToString(deterministic=True))
    digest.update(f"|{request.priority}".encode())
    return digest.hexdigest()
