"""Measures semantic-hit quality on labeled prompt pairs: hit rate and false-hit rate.

Each pair is a stored prompt and a new prompt labeled `hit` (a paraphrase: the stored
answer is right for it) or `miss` (a near miss: it is not). A pair counts as served when
the two prompts' cosine similarity reaches the threshold and the verifier mode accepts
it: `off` (similarity alone), `alignment` (the cache's verifier), or any other verdicts
a caller supplies (a judge model's, for instance).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from llmmesh_cache.verification import PromptTooLongError, Verdict, extract_features, verify


@dataclasses.dataclass(frozen=True)
class LabeledPair:
    first: str
    second: str
    should_hit: bool
    category: str
    lang: str = "en"


@dataclasses.dataclass(frozen=True)
class QualityRow:
    """Outcome at one threshold with one verifier mode."""

    threshold: float
    verifier: str
    hit_rate: float
    false_hit_rate: float
    false_hits: int
    false_hits_by_category: dict[str, int]


def load_pairs(path: pathlib.Path) -> list[LabeledPair]:
    """Reads JSONL lines of {first, second, label: hit|miss, category[, lang]}."""
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record["label"] not in ("hit", "miss"):
                raise ValueError(f"label must be hit or miss: {record}")
            pairs.append(
                LabeledPair(
                    record["first"],
                    record["second"],
                    record["label"] == "hit",
                    record["category"],
                    record.get("lang", "en"),
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


def alignment_verdicts(pairs: Sequence[LabeledPair]) -> list[Verdict]:
    """The cache's verdict on each pair (the second prompt asked, the first stored).

    As in the service, a prompt too long to verify or a check that raises is a refusal.
    """
    verdicts = []
    for pair in pairs:
        try:
            verdict = verify(extract_features(pair.second), extract_features(pair.first))
        except PromptTooLongError:
            verdict = Verdict(False, "too_long")
        except Exception:  # noqa: BLE001 - the service counts any failure as a miss, too
            verdict = Verdict(False, "error")
        verdicts.append(verdict)
    return verdicts


def evaluate(
    pairs: Sequence[LabeledPair],
    similarities: npt.NDArray[np.float32],
    thresholds: Iterable[float],
    verdicts_by_mode: Mapping[str, Sequence[bool]],
) -> list[QualityRow]:
    """Hit and false-hit rates at each threshold, for each verifier mode's verdicts."""
    hits_total = sum(pair.should_hit for pair in pairs)
    misses_total = len(pairs) - hits_total
    rows = []
    for threshold in thresholds:
        for mode, accepted in verdicts_by_mode.items():
            good = bad = 0
            false_by_category: collections.Counter[str] = collections.Counter()
            for pair, similarity, ok in zip(pairs, similarities, accepted, strict=True):
                if not (ok and similarity >= threshold):
                    continue
                if pair.should_hit:
                    good += 1
                else:
                    bad += 1
                    false_by_category[pair.category] += 1
            rows.append(
                QualityRow(
                    threshold=threshold,
                    verifier=mode,
                    hit_rate=good / hits_total if hits_total else 0.0,
                    false_hit_rate=bad / misses_total if misses_total else 0.0,
                    false_hits=bad,
                    false_hits_by_category=dict(false_by_category),
                )
            )
    return rows


def markdown_table(rows: Sequence[QualityRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| threshold | verifier | paraphrase hit rate | near-miss false-hit rate "
        "| false hits by category |",
        "|---:|:---|---:|---:|:---|",
    ]
    for row in rows:
        categories = ", ".join(f"{k} {v}" for k, v in sorted(row.false_hits_by_category.items()))
        lines.append(
            f"| {row.threshold:.2f} | {row.verifier} | {row.hit_rate:.1%} "
            f"| {row.false_hit_rate:.1%} ({row.false_hits}) | {categories or '-'} |"
        )
    return "\n".join(lines)


def paraphrase_losses(
    pairs: Sequence[LabeledPair],
    similarities: npt.NDArray[np.float32],
    verdicts: Sequence[Verdict],
    threshold: float,
) -> str:
    """Why paraphrases were not served at one threshold, counted by category and reason."""
    lost: collections.Counter[tuple[str, str]] = collections.Counter()
    totals: collections.Counter[str] = collections.Counter()
    for pair, similarity, verdict in zip(pairs, similarities, verdicts, strict=True):
        if not pair.should_hit:
            continue
        totals[pair.category] += 1
        if similarity < threshold:
            lost[(pair.category, "below threshold")] += 1
        elif not verdict.passed:
            lost[(pair.category, verdict.failed_check)] += 1
    lines = [
        "| paraphrase category | pairs | served | not served, by reason |",
        "|:---|---:|---:|:---|",
    ]
    for category, total in sorted(totals.items(), key=lambda item: (-item[1], item[0])):
        reasons = {reason: n for (cat, reason), n in lost.items() if cat == category}
        served = total - sum(reasons.values())
        text = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())) or "-"
        lines.append(f"| {category} | {total} | {served} | {text} |")
    return "\n".join(lines)
