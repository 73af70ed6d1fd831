"""Tells the operator when semantic lookups run on simulated embeddings, where they are useless.

The simulated space hashes words: a paraphrase that shares few words with the stored
prompt scores low, so paraphrases almost never hit (0-5% measured). It is the fallback of
the `provider` embedder when the provider has no real embedding model, and it is chosen
silently. At start, for every embedder a semantic tenant uses, this check logs a warning
if the space is simulated and keeps the finding for `llmmesh health`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

import structlog

from llmmesh_cache.embedders.base import EmbedderUnavailableError
from llmmesh_cache.embedders.registry import EmbedderRegistry

_log = structlog.get_logger(__name__)

HEALTH_NOTE = "semantic-embeddings"
PROBE_INTERVAL_S = 2.0
PROBE_ATTEMPTS = 30
ADVICE = (
    "paraphrases will rarely hit; for real semantic hits set LLMMESH_CACHE_EMBEDDER=local "
    "(the local-embeddings extra) or give the provider a real embedding model"
)


@runtime_checkable
class ReportsBackend(Protocol):
    """An embedder that can say which backend embeds for it (the provider embedder)."""

    async def backend(self) -> str: ...


class EmbedderCheck:
    """Whether every semantic tenant's embedder gives real (not simulated) embeddings."""

    def __init__(self, embedders: EmbedderRegistry) -> None:
        self._embedders = embedders
        self.real = True

    async def run(self, choices: set[str]) -> None:
        """Checks each embedder choice once; waits for a provider that is not up yet."""
        for kind in sorted({self._embedders.kind(choice) for choice in choices}):
            if kind == "simulated":
                self._simulated(kind, "chosen by the policy or LLMMESH_CACHE_EMBEDDER")
            elif kind == "provider":
                embedder = self._embedders.get(kind)
                if isinstance(embedder, ReportsBackend):
                    await self._probe_provider(embedder)

    async def _probe_provider(self, embedder: ReportsBackend) -> None:
        for _ in range(PROBE_ATTEMPTS):
            try:
                backend = await embedder.backend()
            except EmbedderUnavailableError:
                await asyncio.sleep(PROBE_INTERVAL_S)
                continue
            if backend == "simulated":
                self._simulated("provider", "the provider's embedder is its simulated backend")
            return
        _log.warning("could not learn which embedder the provider uses", embedder="provider")

    def _simulated(self, kind: str, why: str) -> None:
        self.real = False
        _log.warning("semantic cache on simulated embeddings", embedder=kind, why=why,
                     advice=ADVICE)  # fmt: skip
