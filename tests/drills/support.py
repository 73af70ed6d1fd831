"""What several drills share: a policy for the mesh, a request, and a patient wait."""

from __future__ import annotations

import os
import pathlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.policy import hash_api_key
from llmmesh.router.v1 import router_pb2, router_service_pb2
from llmmesh.testing.mesh import DEV_API_KEY

MODEL = "sim"


def mesh_policy(
    directory: pathlib.Path, *, tokens_per_s: float = 0.0, answer_tokens: int = 12
) -> str:
    """A policy file: the dev tenant, one simulated model at the given pace, and limits that
    bind nothing but make every request hold a concurrency lease (so leaks can be counted)."""
    document: dict[str, Any] = {
        "tenants": [{"name": "dev", "tier": "default",
                     "api_keys_sha256": [hash_api_key(DEV_API_KEY)]}],
        "models": [{"name": MODEL, "provider": "simulated", "upstream_model": MODEL,
                    "input_price_per_1k": 0.001, "output_price_per_1k": 0.002,
                    "context_window": 16384, "capabilities": ["chat"]}],
        "limits": {"tiers": {"default": [
            {"name": "tenant-in-flight", "kind": "concurrency", "scope": "tenant",
             "limit": 10_000},
            {"name": "tenant-tokens", "kind": "tokens", "scope": "tenant",
             "limit": 100_000_000, "window_s": 60},
        ]}},
        "providers": {"instances": [{"name": "simulated", "backend": "simulated",
                                     "tokens_per_s": tokens_per_s,
                                     "answer_tokens": answer_tokens}]},
    }  # fmt: skip
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def mesh_env(policy_file: str, **variables: str) -> dict[str, str]:
    return {**os.environ, "LLMMESH_POLICY_FILE": policy_file, **variables}


def chat_request(*, bypass_cache: bool = True) -> router_service_pb2.StreamCompleteRequest:
    """A request with a prompt of its own, so that no two requests coalesce or hit the cache."""
    mode = caching_pb2.CACHE_MODE_BYPASS if bypass_cache else caching_pb2.CACHE_MODE_UNSPECIFIED
    return router_service_pb2.StreamCompleteRequest(
        model=MODEL,
        messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=uuid.uuid4().hex)],
        cache=router_pb2.CacheControl(mode=mode),
    )


def wait_for(condition: Callable[[], bool], within_s: float, interval_s: float = 0.05) -> bool:
    """Polls `condition` until it holds or `within_s` passes; says which."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True
