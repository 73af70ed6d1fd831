"""Embeds prompts and picks the semantic candidate that may be served, within bounded cost.

Everything here fails towards a miss: a prompt over the verification cap, a full work
queue, an embedding or a verification past its timeout, an embedder that is down, a check
that raises. Each is counted (by reason, never with the prompt) and the caller simply
misses. CPU-heavy work (in-process embedding, verification) runs on the fair worker pool,
never on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog

from llmmesh_cache.cpu_pool import FairCpuPool, PoolBusyError
from llmmesh_cache.embedders.base import EmbedderUnavailableError
from llmmesh_cache.embedders.registry import EmbedderRegistry
from llmmesh_cache.judge import PairJudge
from llmmesh_cache.observability import CacheMetrics
from llmmesh_cache.verification import MAX_VERIFIED_BYTES, PromptTooLongError, Verdict, verify
from llmmesh_cache.verification.features import FeatureCache, PromptFeatures

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from llmmesh_cache.entries import Vector

_log = structlog.get_logger(__name__)

# Checks a judge may not overrule: numbers, flags, versions, negations and language.
WARM_UP_TIMEOUT_S = 120.0
GUARD_CHECKS = frozenset({"language", "numbers_and_symbols", "negation", "too_long", "error"})


@runtime_checkable
class InProcessEmbedder(Protocol):
    """An embedder that computes on the calling thread (a local model, the simulated one)."""

    def embed_now(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


@dataclasses.dataclass(frozen=True)
class SemanticLimits:
    embed_timeout_s: float = 2.0
    verify_timeout_s: float = 1.0


def semantic_eligible(prompt_text: str) -> bool:
    """Whether a (normalized) prompt may be embedded and verified at all."""
    return bool(prompt_text) and len(prompt_text.encode()) <= MAX_VERIFIED_BYTES


class SemanticMatcher:
    """The semantic half of a lookup: embedding, then verification of candidates."""

    def __init__(
        self,
        embedders: EmbedderRegistry,
        pool: FairCpuPool,
        features: FeatureCache,
        metrics: CacheMetrics,
        limits: SemanticLimits = SemanticLimits(),
        judge: PairJudge | None = None,
    ) -> None:
        self._embedders = embedders
        self._pool = pool
        self._features = features
        self._metrics = metrics
        self._limits = limits
        self.judge = judge

    async def embed(self, tenant: str, choice: str, text: str) -> Vector | None:
        """The prompt's vector, or None (counted) when it cannot be had in time."""
        if not semantic_eligible(text):
            self._metrics.skipped("too_long")
            return None
        try:
            embedder = self._embedders.get(choice)
            if isinstance(embedder, InProcessEmbedder):
                vectors = await self._pool.run(
                    tenant,
                    functools.partial(embedder.embed_now, [text]),
                    timeout_s=self._limits.embed_timeout_s,
                )
            else:
                async with asyncio.timeout(self._limits.embed_timeout_s):
                    vectors = await embedder.embed([text])
        except EmbedderUnavailableError as error:
            self._skip("embedder_unavailable", tenant, str(error))
            return None
        except PoolBusyError:
            self._skip("busy", tenant)
            return None
        except TimeoutError:
            self._skip("embed_timeout", tenant)
            return None
        except Exception as error:  # noqa: BLE001 - a failing model is a miss, not INTERNAL
            self._skip("embed_error", tenant, type(error).__name__)
            return None
        vector: Vector = vectors[0]
        return vector

    async def choose(
        self, tenant: str, verifier: str, asked: str, stored: Sequence[str]
    ) -> int | None:
        """The index of the first stored prompt that may answer `asked`, or None."""
        try:
            verdicts = await self._pool.run(
                tenant,
                functools.partial(
                    self.verdicts, asked, stored, stop_at_pass=verifier == "alignment"
                ),
                timeout_s=self._limits.verify_timeout_s,
            )
        except PoolBusyError:
            self._skip("busy", tenant)
            return None
        except TimeoutError:
            self._skip("verify_timeout", tenant)
            return None
        for index, verdict in enumerate(verdicts):
            if await self._accepted(verifier, verdict, stored[index], asked):
                return index
            self._metrics.rejected(verdict.failed_check or "judge")
        return None

    async def _accepted(self, verifier: str, verdict: Verdict, stored: str, asked: str) -> bool:
        if verifier == "alignment":
            return verdict.passed
        if self.judge is None:  # policy validation requires one; be safe regardless
            return False
        if verifier == "alignment_and_judge" and not verdict.passed:
            return False
        if verdict.failed_check in GUARD_CHECKS:
            return False
        return await self.judge.same_request(stored, asked)

    def verdicts(self, asked: str, stored: Sequence[str], *, stop_at_pass: bool) -> list[Verdict]:
        """Verdicts for each stored prompt, in order (runs on a worker thread).

        A check that raises is a refusal, counted and logged without the prompt.
        """
        query = self._read(asked)
        results: list[Verdict] = []
        for text in stored:
            candidate = self._read(text)
            if isinstance(query, Verdict):
                verdict = query
            elif isinstance(candidate, Verdict):
                verdict = candidate
            else:
                try:
                    verdict = verify(query, candidate)
                except Exception as error:  # noqa: BLE001 - any failure is a miss, by design
                    verdict = self._error(error)
            results.append(verdict)
            if verdict.passed and stop_at_pass:
                break
        return results

    def _read(self, prompt: str) -> PromptFeatures | Verdict:
        try:
            return self._features.get(prompt)
        except PromptTooLongError:
            return Verdict(False, "too_long")
        except Exception as error:  # noqa: BLE001 - any failure is a miss, by design
            return self._error(error)

    def _error(self, error: Exception) -> Verdict:
        self._metrics.verification_error(type(error).__name__)
        _log.warning("verification failed; treated as a miss", error_type=type(error).__name__)
        return Verdict(False, "error")

    def _skip(self, reason: str, tenant: str, detail: str = "") -> None:
        self._metrics.skipped(reason)
        _log.warning("semantic lookup skipped", reason=reason, detail=detail, tenant=tenant)

    async def warm_up(self, choices: set[str]) -> None:
        """Loads word dictionaries and in-process models before the first lookup needs them."""
        calls: list[Callable[[], object]] = [functools.partial(self._features.get, "warm up")]
        for choice in sorted(choices):
            embedder = self._embedders.get(choice)
            if isinstance(embedder, InProcessEmbedder):
                calls.append(functools.partial(embedder.embed_now, ["warm up"]))
        for call in calls:
            try:
                await self._pool.run("", call, timeout_s=WARM_UP_TIMEOUT_S)
            except (EmbedderUnavailableError, PoolBusyError, TimeoutError) as error:
                _log.warning("semantic warm-up incomplete", error_type=type(error).__name__)
