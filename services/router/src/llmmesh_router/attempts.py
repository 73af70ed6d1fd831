"""Runs a request down its model chain: retries, fallbacks and circuit breakers.

Before the first token, a failure is invisible to the caller: a retryable error is retried
on the same model with backoff (never past the deadline), then the chain moves on; a
context-length error moves to a model with a larger window. After the first token there
is no going back: the stream ends with STREAM_INTERRUPTED saying how much was delivered,
so an answer is never silently truncated or spliced from two models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable

import grpc
import grpc.aio
import structlog
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_pb2, provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime import semconv
from llmmesh.runtime.errors import RpcFailure
from llmmesh_router import observability
from llmmesh_router.backoff import BackoffPolicy
from llmmesh_router.breaker import BreakerRegistry, CircuitBreaker, ProbeClaims
from llmmesh_router.deadline import Deadline
from llmmesh_router.peers import peer_failure
from llmmesh_router.policy import CatalogModel, RouterPolicy
from llmmesh_router.routing import larger_window_models
from llmmesh_router.tokens import estimate_text_tokens

log = structlog.get_logger(__name__)

RETRYABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
CONTEXT_LENGTH_EXCEEDED = "CONTEXT_LENGTH_EXCEEDED"
CREDENTIALS_REJECTED = "UPSTREAM_CREDENTIALS_REJECTED"


@dataclasses.dataclass(frozen=True)
class Delta:
    text: str


@dataclasses.dataclass(frozen=True)
class Finished:
    model: CatalogModel
    summary: provider_pb2.GenerationSummary
    attempts: int


GenerationEvent = Delta | Finished


@dataclasses.dataclass
class AttemptLog:
    """What happened to each attempt, for the final error and for traces."""

    attempts: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    shortest_retry_after_s: float | None = None

    def failed(self, model: CatalogModel, failure: RpcFailure) -> None:
        self.failures.append(f"{model.name}:{failure.reason}")
        if failure.retry_after_s is not None:
            self.shortest_retry_after_s = min(
                failure.retry_after_s, self.shortest_retry_after_s or failure.retry_after_s
            )


class AllModelsFailed(RpcFailure):
    """Every model of the chain failed or was unavailable before any text was sent."""

    def __init__(self, attempt_log: AttemptLog, skipped: list[str]) -> None:
        tried = ", ".join(attempt_log.failures) or "none"
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            f"no model could answer; attempts: {tried}"
            + (f"; skipped (circuit open): {', '.join(skipped)}" if skipped else ""),
            reason="NO_MODEL_AVAILABLE",
            metadata={"attempts": str(attempt_log.attempts), "failures": tried},
            retry_after_s=attempt_log.shortest_retry_after_s,
        )


class ChainRunner:
    def __init__(
        self,
        provider: provider_service_pb2_grpc.ProviderServiceStub,
        breakers: BreakerRegistry,
        policy_source: Callable[[], RouterPolicy],
        rng: random.Random | None = None,
        probe_claims: ProbeClaims | None = None,
    ) -> None:
        self._provider = provider
        self._breakers = breakers
        self._probe_claims = probe_claims
        self._policy_source = policy_source
        self._rng = rng or random.Random()

    async def run(
        self,
        chain: tuple[CatalogModel, ...],
        messages: list[chat_pb2.ChatMessage],
        parameters: chat_pb2.GenerationParameters,
        deadline: Deadline,
    ) -> AsyncIterator[GenerationEvent]:
        policy = self._policy_source()
        backoff = BackoffPolicy(
            policy.routing.retry.backoff_base_s, policy.routing.retry.backoff_cap_s
        )
        attempt_log = AttemptLog()
        pending = list(chain)
        tried: set[str] = set()
        skipped: list[str] = []
        while pending:
            model = pending.pop(0)
            tried.add(model.name)
            breaker = self._breakers.get(model.provider, model.upstream_model)
            for attempt in range(1, policy.routing.retry.max_attempts_per_model + 1):
                if not await self._may_call(breaker):
                    skipped.append(model.name)
                    break
                attempt_log.attempts += 1
                delivered: list[str] = []
                try:
                    async for event in self._attempt(
                        model, messages, parameters, deadline, delivered
                    ):
                        if isinstance(event, Finished):
                            yield dataclasses.replace(event, attempts=attempt_log.attempts)
                        else:
                            yield event
                    breaker.record_success()
                    return
                except RpcFailure as failure:
                    if delivered:
                        breaker.record_failure()
                        raise interrupted_failure(failure, delivered) from failure
                    attempt_log.failed(model, failure)
                    if failure.reason == CONTEXT_LENGTH_EXCEEDED:
                        breaker.release_probe()
                        # The chain's own larger models first, then the catalog's.
                        pending = [
                            m for m in pending if m.context_window > model.context_window
                        ] or larger_window_models(policy, model, tried)
                        _note(semconv.EVENT_FALLBACK, model, failure)
                        break
                    if not _is_provider_fault(failure):
                        breaker.release_probe()
                        raise
                    breaker.record_failure()
                    if (
                        failure.code not in RETRYABLE_CODES
                        or failure.reason == CREDENTIALS_REJECTED
                    ):
                        _note(semconv.EVENT_FALLBACK, model, failure)
                        break
                    delay_s = backoff.delay_s(attempt, self._rng, failure.retry_after_s)
                    last_try = attempt == policy.routing.retry.max_attempts_per_model
                    if last_try or delay_s >= deadline.remaining_s():
                        _note(semconv.EVENT_FALLBACK, model, failure)
                        break
                    _note(semconv.EVENT_RETRY, model, failure, delay_s=delay_s)
                    await asyncio.sleep(delay_s)
                except asyncio.CancelledError:
                    breaker.release_probe()
                    raise
            if deadline.remaining_s() <= 0:
                break
        raise AllModelsFailed(attempt_log, skipped)

    async def _may_call(self, breaker: CircuitBreaker) -> bool:
        if not breaker.allows_request():
            return False
        # Half-open: one probe for the whole mesh, not one per replica.
        claims = self._probe_claims
        if breaker.probing and claims is not None and not await claims.claim_probe(breaker.key):
            breaker.release_probe()
            return False
        return True

    async def _attempt(
        self,
        model: CatalogModel,
        messages: list[chat_pb2.ChatMessage],
        parameters: chat_pb2.GenerationParameters,
        deadline: Deadline,
        delivered: list[str],
    ) -> AsyncIterator[GenerationEvent]:
        started = time.monotonic()
        with observability.tracer.start_as_current_span(
            f"chat {model.upstream_model}",
            attributes={
                semconv.GEN_AI_OPERATION_NAME: "chat",
                semconv.GEN_AI_PROVIDER_NAME: model.provider,
                semconv.GEN_AI_REQUEST_MODEL: model.upstream_model,
                semconv.GEN_AI_REQUEST_MAX_TOKENS: parameters.max_tokens,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            call = self._provider.Generate(
                provider_service_pb2.GenerateRequest(
                    instance=model.provider, model=model.upstream_model,
                    messages=messages, parameters=parameters),
                timeout=deadline.remaining_s(),
            )  # fmt: skip
            summary = None
            try:
                async for event in call:
                    if event.HasField("delta"):
                        if not delivered:
                            span.set_attribute(
                                semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
                                time.monotonic() - started,
                            )
                        delivered.append(event.delta.text)
                        yield Delta(event.delta.text)
                    else:
                        summary = event.summary
            except grpc.aio.AioRpcError as error:
                failure = peer_failure("provider", error)
                span.set_status(Status(StatusCode.ERROR, failure.reason))
                span.set_attribute(semconv.ERROR_TYPE, failure.reason)
                raise failure from error
            finally:
                call.cancel()
            if summary is None:
                span.set_status(Status(StatusCode.ERROR, "UPSTREAM_STREAM_CUT"))
                raise RpcFailure(
                    grpc.StatusCode.UNAVAILABLE, "provider stream ended without a summary",
                    reason="UPSTREAM_STREAM_CUT",
                )  # fmt: skip
            span.set_attributes(
                {
                    semconv.GEN_AI_RESPONSE_MODEL: summary.response_model,
                    semconv.GEN_AI_RESPONSE_ID: summary.provider_request_id,
                    semconv.GEN_AI_RESPONSE_FINISH_REASONS: [
                        chat_pb2.FinishReason.Name(summary.finish_reason)
                        .removeprefix("FINISH_REASON_")
                        .lower()
                    ],
                    semconv.GEN_AI_USAGE_INPUT_TOKENS: summary.usage.input_tokens,
                    semconv.GEN_AI_USAGE_OUTPUT_TOKENS: summary.usage.output_tokens,
                }
            )
        yield Finished(model, summary, attempts=0)


def _note(name: str, model: CatalogModel, failure: RpcFailure, **extra: float) -> None:
    """Records a retry or fallback in the log and as an event on the request's span."""
    attributes: dict[str, AttributeValue] = {
        "model": model.name,
        semconv.ERROR_REASON: failure.reason,
        **extra,
    }
    log.info(name, **attributes)
    observability.event(name, attributes)


def _is_provider_fault(failure: RpcFailure) -> bool:
    """False for errors the caller caused (bad input): those are never retried."""
    if failure.code == grpc.StatusCode.INVALID_ARGUMENT:
        return False
    return bool(failure.code != grpc.StatusCode.DEADLINE_EXCEEDED)


def interrupted_failure(cause: RpcFailure, chunks: list[str]) -> RpcFailure:
    """A failure after text was delivered: says how much, so nothing passes for complete."""
    delivered_chars = sum(map(len, chunks))
    return RpcFailure(
        cause.code,
        f"stream interrupted after {len(chunks)} deltas ({delivered_chars} characters): "
        f"{cause.message}",
        reason="STREAM_INTERRUPTED",
        metadata={
            **cause.metadata,
            "upstream_reason": cause.reason,
            "delivered_deltas": str(len(chunks)),
            "delivered_chars": str(delivered_chars),
            "delivered_tokens_estimate": str(estimate_text_tokens(delivered_chars)),
        },
        retry_after_s=cause.retry_after_s,
    )
