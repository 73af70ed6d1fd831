"""Measures semantic-hit quality on labeled prompt pairs: hit rate and false-hit rate.

Each pair is a stored prompt and a new prompt labeled `hit` (a paraphrase: the stored
answer is right for it) or `miss` (a near miss: it is not). A pair counts as served when
the two prompts' cosine similarity reaches the threshold and, where enabled, verification
passes.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from llmmesh_cache.verification import extract_features, verify


@dataclasses.dataclass(frozen=True)
class LabeledPair:
    first: str
    second: str
    should_hit: bool
    category: str


@dataclasses.dataclass(frozen=True)
class QualityRow:
    """Outcome at one threshold, with or without verification."""

    threshold: float
    verified: bool
    hit_rate: float
    false_hit_rate: float
    false_hits_by_category: dict[str, int]


def load_pairs(path: pathlib.Path) -> list[LabeledPair]:
    """Reads JSONL lines of {first, second, label: hit|miss, category}."""
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record["label"] not in ("hit", "miss"):
                raise ValueError(f"label must be hit or miss: {record}")
            pairs.append(
                LabeledPair(
                    record["first"], record["second"], record["label"] == "hit", record["category"]
                )
            )
    return pairs


def pair_similarities(
    pairs: Sequence[LabeledPair], vectors: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Cosine of each pair, given unit vectors for all firsts followed by all seconds."""
    count = len(pairs)
    similarities: npt.NDArray[np.float32] = np.einsum(
        "ij,ij->i", vectors[:count], vectors[count:]
    ).astype(np.float32)
    return similarities


def evaluate(
    pairs: Sequence[LabeledPair],
    similarities: npt.NDArray[np.float32],
    thresholds: Iterable[float],
) -> list[QualityRow]:
    """Hit and false-hit rates at each threshold, without and with verification."""
    verdicts = [
        verify(extract_features(pair.second), extract_features(pair.first)).passed for pair in pairs
    ]
    hits_total = sum(pair.should_hit for pair in pairs)
    misses_total = len(pairs) - hits_total
    rows = []
    for threshold in thresholds:
        for verified in (False, True):
            served = [
                bool(similarity >= threshold) and (verdict or not verified)
                for similarity, verdict in zip(similarities, verdicts, strict=True)
            ]
            false_by_category: dict[str, int] = {}
            good = bad = 0
            for pair, was_served in zip(pairs, served, strict=True):
                if was_served and pair.should_hit:
                    good += 1
                elif was_served:
                    bad += 1
                    false_by_category[pair.category] = false_by_category.get(pair.category, 0) + 1
            rows.append(
                QualityRow(
                    threshold=threshold,
                    verified=verified,
                    hit_rate=good / hits_total if hits_total else 0.0,
                    false_hit_rate=bad / misses_total if misses_total else 0.0,
                    false_hits_by_category=false_by_category,
                )
            )
    return rows


def markdown_table(rows: Sequence[QualityRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| threshold | verification | paraphrase hit rate | near-miss false-hit rate "
        "| false hits by category |",
        "|---:|:---:|---:|---:|:---|",
    ]
    for row in rows:
        categories = ", ".join(f"{k} {v}" for k, v in sorted(row.false_hits_by_category.items()))
        lines.append(
            f"| {row.threshold:.2f} | {'on' if row.verified else 'off'} "
            f"| {row.hit_rate:.1%} | {row.false_hit_rate:.1%} | {categories or '-'} |"
        )
    return "\n".join(lines)
