"""Every environment variable the router reads, typed, with the embedded defaults."""

from __future__ import annotations

import pydantic
from pydantic_settings import SettingsConfigDict

from llmmesh.runtime.settings import ServiceSettings, shared
from llmmesh_router.validation import MAX_LIST_ITEMS


class RouterSettings(ServiceSettings):
    """`LLMMESH_ROUTER_*` variables."""

    model_config = SettingsConfigDict(env_prefix="LLMMESH_ROUTER_", extra="ignore", frozen=True)

    port: int = pydantic.Field(default=50051, ge=0, le=65535)
    ratelimiter_address: str = "127.0.0.1:50052"
    cache_address: str = "127.0.0.1:50053"
    provider_address: str = "127.0.0.1:50054"
    # Requests with more text, in all their fields, are refused before any peer is called.
    max_prompt_bytes: int = pydantic.Field(default=1_000_000, gt=0)
    # Requests with a longer list (messages, stop sequences, tools) are refused likewise.
    max_list_items: int = pydantic.Field(default=MAX_LIST_ITEMS, gt=0)
    # Decoding is the one cost paid before any check: 16 MiB of empty messages takes half a
    # second and 500 MB. The front door takes what a prompt within its budget can need.
    max_message_bytes: int = pydantic.Field(default=4 * 1024 * 1024, gt=0)
    # Used when a request leaves max_tokens at 0.
    default_max_tokens: int = pydantic.Field(default=512, gt=0)
    # Upper bound for requests that arrive without a deadline.
    default_timeout_s: float = pydantic.Field(default=120.0, gt=0)
    # TLS on the router's own, client-facing port (plain text without them); with a client
    # CA, callers must present a certificate from it (mTLS for backends). The mesh identity
    # that the router presents to its peers is LLMMESH_ROUTER_TLS_* instead.
    public_tls_cert_file: str = ""
    public_tls_key_file: str = ""
    public_client_ca_file: str = ""
    # A caller that reads nothing for this long has its stream ended and the upstream call
    # cancelled; until then it costs a bounded buffer, not the whole answer.
    stall_timeout_s: float = pydantic.Field(default=30.0, gt=0)
    # How long Settle and Release are retried (with backoff) before the lease is left to
    # expire; also bounds how long a stopping router waits for them.
    settle_retry_budget_s: float = pydantic.Field(default=10.0, gt=0)
    # Redis for sharing circuit breaker state (policy `routing.breaker.shared`).
    redis_url: str = pydantic.Field(default="", validation_alias=shared("REDIS_URL"))
    # The CA bundle a `rediss://` server's certificate must chain to (system CAs if empty).
    redis_ca_file: str = pydantic.Field(default="", validation_alias=shared("REDIS_CA_FILE"))
