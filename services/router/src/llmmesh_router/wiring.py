"""Builds the router's servicer and what the server bootstrap watches for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmmesh.policy import PolicyError
from llmmesh.runtime.tls import redis_tls_options
from llmmesh.runtime.wiring import Closer, Wiring
from llmmesh_router import observability
from llmmesh_router.breaker import BreakerRegistry, BreakerSettings
from llmmesh_router.classifiers import Classifier, HeuristicClassifier, ModelClassifier
from llmmesh_router.completion import CompletionPipeline
from llmmesh_router.embedding import EmbeddingPipeline
from llmmesh_router.peers import Peers
from llmmesh_router.policy import RouterPolicy, load_router_policy
from llmmesh_router.servicer import RouterServicer
from llmmesh_router.settings import RouterSettings
from llmmesh_router.settlement import Settler

if TYPE_CHECKING:
    from llmmesh_router.breaker_sync import RedisBreakerSync


def build_classifier(policy: RouterPolicy, peers: Peers) -> Classifier:
    configured = policy.routing.classifier
    model = policy.model(configured.model) if configured.model else None
    if configured.kind == "model" and model is not None:
        return ModelClassifier(peers.provider, model, configured)
    return HeuristicClassifier()


async def build_servicer(settings: RouterSettings, policy_document: dict[str, Any]) -> Wiring:
    policy = load_router_policy(policy_document)
    peers = Peers.connect(settings)
    breaker_policy = policy.routing.breaker
    breakers = BreakerRegistry(
        BreakerSettings(
            consecutive_failures=breaker_policy.consecutive_failures,
            failure_rate=breaker_policy.failure_rate,
            window=breaker_policy.window,
            min_calls=breaker_policy.min_calls,
            recovery_timeout_s=breaker_policy.recovery_timeout_s,
        ),
        on_change=observability.record_circuit_change,
    )
    closers: list[Closer] = []
    sync = None
    if breaker_policy.shared:
        sync = await _shared_breakers(settings, breakers, breaker_policy.recovery_timeout_s)
        closers.append(sync.close)
    pipeline = CompletionPipeline(
        policy, peers, settings, breakers, build_classifier(policy, peers), probe_claims=sync
    )
    embeddings = EmbeddingPipeline(
        policy, peers, settings, Settler(peers.ratelimiter, budget_s=settings.settle_retry_budget_s)
    )
    servicer = RouterServicer(
        policy, pipeline, embeddings, stall_timeout_s=settings.stall_timeout_s
    )
    return Wiring(
        servicer=servicer,
        readiness_checks=[peers.readiness],
        closers=[pipeline.aclose, peers.close, *closers],
        reloaders=[lambda document: servicer.replace_policy(load_router_policy(document))],
    )


async def _shared_breakers(
    settings: RouterSettings, breakers: BreakerRegistry, recovery_timeout_s: float
) -> RedisBreakerSync:
    if not settings.redis_url:
        raise PolicyError("invalid policy: routing.breaker.shared: needs LLMMESH_REDIS_URL")
    # Imported here: redis-py costs a router that does not share its breakers 5 MiB idle.
    import redis.asyncio as redis

    from llmmesh_router.breaker_sync import RedisBreakerSync

    client = redis.from_url(
        settings.redis_url, **redis_tls_options(settings.redis_url, settings.redis_ca_file)
    )
    sync = RedisBreakerSync(client, breakers, recovery_timeout_s)
    await sync.start()
    breakers.add_listener(sync.publish)
    return sync
