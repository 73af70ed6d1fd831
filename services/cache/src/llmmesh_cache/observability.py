"""What the cache records about semantic lookups: counts by outcome, never prompt text."""

from __future__ import annotations

from opentelemetry import metrics

from llmmesh.runtime import semconv


class CacheMetrics:
    """The cache's counters, on a meter that tests can give their own reader."""

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("llmmesh.cache")
        self._rejections = meter.create_counter(
            "llmmesh.cache.verification.rejections",
            unit="{candidate}",
            description="Semantic candidates refused, by the first check that failed",
        )
        self._errors = meter.create_counter(
            "llmmesh.cache.verification.errors",
            unit="{candidate}",
            description="Verification checks that raised; each counts as a miss",
        )
        self._skips = meter.create_counter(
            "llmmesh.cache.semantic.skipped",
            unit="{request}",
            description="Semantic lookups or embeddings not attempted, by reason",
        )
        self._verdicts = meter.create_counter(
            "llmmesh.cache.judge.verdicts",
            unit="{pair}",
            description="Judge model verdicts by outcome (yes, no, cached, busy, error)",
        )

    def rejected(self, check: str) -> None:
        self._rejections.add(1, {semconv.CACHE_VERIFICATION_CHECK: check})

    def verification_error(self, error_type: str) -> None:
        self._errors.add(1, {semconv.ERROR_TYPE: error_type})

    def skipped(self, reason: str) -> None:
        self._skips.add(1, {semconv.CACHE_SKIP_REASON: reason})

    def judged(self, outcome: str) -> None:
        self._verdicts.add(1, {semconv.CACHE_OUTCOME: outcome})
