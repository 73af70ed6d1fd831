"""Every environment variable of the ratelimiter, typed, with defaults that need no env at all."""

from __future__ import annotations

import pydantic
from pydantic_settings import SettingsConfigDict

from llmmesh.runtime.settings import ServiceSettings, shared
from llmmesh_ratelimiter.rate_policy import FailureMode


class RatelimiterSettings(ServiceSettings):
    """`LLMMESH_RATELIMITER_*` settings; `LLMMESH_REDIS_URL` is shared with the cache."""

    model_config = SettingsConfigDict(
        env_prefix="LLMMESH_RATELIMITER_", extra="ignore", frozen=True, populate_by_name=True
    )

    port: int = pydantic.Field(default=50052, ge=0, le=65535)
    # Empty: limits live in this process (exact for a single replica only).
    redis_url: str = pydantic.Field(default="", validation_alias=shared("REDIS_URL"))
    # The CA bundle a `rediss://` server's certificate must chain to (system CAs if empty).
    redis_ca_file: str = pydantic.Field(default="", validation_alias=shared("REDIS_CA_FILE"))
    # Connect with the Redis Cluster protocol (the URL names any one node).
    redis_cluster: bool = False
    # One of them is kept for readiness probes.
    redis_max_connections: int = pydantic.Field(default=64, ge=2)
    # Redis counts as unreachable (and the failure mode decides) when it leaves a command
    # unanswered this long, or refuses the connection. A slower answer within this bound is
    # awaited, as long as the caller's deadline allows.
    decision_timeout_s: float = pydantic.Field(default=1.0, gt=0, le=10)
    # Used when the policy's `limits.failure_mode` is not set. Open by default: the limiter
    # guards fairness and upstream quotas, which upstreams also enforce themselves, so losing
    # Redis should degrade limits rather than turn into an outage of the whole gateway.
    failure_mode: FailureMode = FailureMode.OPEN
    # How long a reservation holds its concurrency slot and record when nobody settles it.
    lease_ttl_s: float = pydantic.Field(default=300.0, gt=0)
    # After SIGTERM, report not ready this long before refusing calls: callers' channels
    # watch readiness and send settlements to another replica instead.
    drain_delay_s: float = pydantic.Field(default=2.0, ge=0)
