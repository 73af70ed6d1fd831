"""Decides whether a semantically similar stored prompt asks exactly what the new one asks.

Embeddings score "a flight from London to Paris" and "from Paris to London" at 0.99, and
"the maximum dose for an adult" and "for a child" at 0.95, so similarity cannot decide a
hit. Verification is built for precision on prompts it has never seen: every content word
of each prompt must be matched in the other by the same lemma, a listed synonym or an
inflection, and anything left unmatched is a miss. Numbers, versions, flags, times and
paths must agree as written, negations must agree, and the content words must not trade
places around one another or around "from", "to" and "than". Each check is linear (the
order check n log n at most) on prompts capped at MAX_VERIFIED_BYTES, and the first failing
check ends verification. docs/semantic-cache-quality.md measures it and lists its blind spots.
"""

from __future__ import annotations

import dataclasses

from llmmesh_cache.verification.features import PromptFeatures, extract_features
from llmmesh_cache.verification.order import roles_disagree, swapped
from llmmesh_cache.verification.tokens import MAX_VERIFIED_BYTES, PromptTooLongError

__all__ = [
    "MAX_VERIFIED_BYTES",
    "PromptFeatures",
    "PromptTooLongError",
    "Verdict",
    "extract_features",
    "verify",
]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a candidate may be served, and the first check that failed if not."""

    passed: bool
    failed_check: str = ""


PASSED = Verdict(passed=True)


def _languages_differ(first: str, second: str) -> bool:
    # A short prompt often has too few function words to tell; only two recognized,
    # different languages count (their content words then differ anyway).
    return "unknown" not in (first, second) and first != second


def verify(query: PromptFeatures, candidate: PromptFeatures) -> Verdict:
    """Passes only when nothing that could change the answer differs; stops at the first."""
    if _languages_differ(query.language, candidate.language):
        return Verdict(False, "language")
    if query.exact != candidate.exact:
        return Verdict(False, "numbers_and_symbols")
    if query.negations != candidate.negations:
        return Verdict(False, "negation")
    if query.content != candidate.content:
        return Verdict(False, "unmatched_words")
    if roles_disagree(query.roles, candidate.roles):
        return Verdict(False, "roles")
    if swapped(query, candidate):
        return Verdict(False, "word_order")
    return PASSED
