"""Holds the policy in force and swaps in a reloaded one only when it validates."""

from __future__ import annotations

from typing import Any

import structlog

from llmmesh.policy import PolicyError
from llmmesh_ratelimiter.rate_policy import RatePolicy, load_rate_policy

_log = structlog.get_logger(__name__)


class PolicyHolder:
    """The current RatePolicy; `reload` is the service's policy reloader (SIGHUP)."""

    def __init__(self, policy: RatePolicy) -> None:
        self._policy = policy

    @property
    def current(self) -> RatePolicy:
        return self._policy

    def reload(self, document: dict[str, Any]) -> None:
        """Validates the new document first; a bad one is logged and the old policy stays."""
        try:
            policy = load_rate_policy(document)
        except PolicyError as exc:
            _log.error(
                "ratelimit policy reload rejected; keeping the current policy", error=str(exc)
            )
            return
        self._policy = policy
        _log.info(
            "ratelimit policy reloaded",
            tenants=len(policy.tenant_limits),
            hash_tag_scope=policy.hash_tag_scope.value,
        )
