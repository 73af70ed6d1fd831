"""Builds the provider servicer, and what the server bootstrap must close, from the policy."""

from __future__ import annotations

import os
from typing import Any

from llmmesh.runtime.wiring import Wiring
from llmmesh_provider.config import parse_provider_policy
from llmmesh_provider.registry import build_registry
from llmmesh_provider.servicer import ProviderServicer
from llmmesh_provider.settings import ProviderSettings
from llmmesh_provider.validation import EmbedLimits


async def build_servicer(settings: ProviderSettings, policy_document: dict[str, Any]) -> Wiring:
    """The servicer over every configured instance; raises PolicyError on a bad `providers`.

    Upstream outages do not make this service unhealthy (other instances still serve), so
    there are no dependency checks. Instances are built once: a changed `providers` section
    takes effect on restart, since rebuilding clients under in-flight streams is not worth
    the risk. A reload (SIGHUP) re-reads the key files, so a rotated key needs no restart.
    """
    policy = parse_provider_policy(policy_document)
    registry = await build_registry(policy.providers, os.environ)
    servicer = ProviderServicer(
        registry,
        embed_limits=EmbedLimits(
            max_inputs=settings.max_embed_inputs, max_input_chars=settings.max_embed_input_chars
        ),
        deadline_margin_s=settings.deadline_margin_ms / 1000,
    )

    def reload_key_files(_document: dict[str, Any]) -> None:
        registry.key_files.reload()

    return Wiring(servicer=servicer, closers=[registry.aclose], reloaders=[reload_key_files])
