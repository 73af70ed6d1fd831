"""Writes the semantic-cache quality tables: hit and false-hit rates per threshold and verifier.

    HF_HUB_OFFLINE=1 python -m bench.cache.quality                  # all three sets
    HF_HUB_OFFLINE=1 python -m bench.cache.quality --pairs FILE --output-dir DIR
    ... --judge-address HOST:PORT --judge-instance NAME --judge-model MODEL   # judge rows

Embeds every labeled pair with the offline all-MiniLM-L6-v2 model (the cache's
`local-embeddings` extra) and reports, for each threshold, how many paraphrases would be
served and how many near misses would be served wrongly: with similarity alone (`off`),
with the cache's verifier (`alignment`), and, when a provider with a real model is given,
with the judge model (`judge`, `alignment_and_judge`). Each set's report is written to
docs/data/semantic-quality-<set>.md. The held-out set is measured, never tuned on.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import pathlib
import time
from collections.abc import Sequence

import grpc.aio

from llmmesh_cache.embedders.local import LocalMiniLMEmbedder
from llmmesh_cache.judge import PairJudge
from llmmesh_cache.observability import CacheMetrics
from llmmesh_cache.policy import DEFAULT_SIMILARITY_THRESHOLD
from llmmesh_cache.quality import (
    LabeledPair,
    alignment_verdicts,
    evaluate,
    load_pairs,
    markdown_table,
    pair_similarities,
    paraphrase_losses,
)
from llmmesh_cache.semantic import GUARD_CHECKS
from llmmesh_cache.verification import Verdict

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
DATA = REPOSITORY / "services/cache/tests/data"
SETS = {
    "heldout": DATA / "heldout_pairs.jsonl",
    "project": DATA / "semantic_pairs.jsonl",
    "dev": DATA / "dev_pairs.jsonl",
}
OUTPUT_DIR = REPOSITORY / "docs/data"
THRESHOLDS = (0.0, 0.50, 0.60, 0.70, 0.75, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.95)


async def judge_verdicts(
    pairs: Sequence[LabeledPair], verdicts: Sequence[Verdict], arguments: argparse.Namespace
) -> tuple[list[bool], list[bool]]:
    """The judge's verdicts where the hard checks let it decide, alone and behind alignment."""
    channel = grpc.aio.insecure_channel(arguments.judge_address)
    judge = PairJudge(
        channel, instance=arguments.judge_instance, model=arguments.judge_model,
        timeout_s=30.0, max_in_flight=4, cache_bytes=1 << 20, metrics=CacheMetrics(),
    )  # fmt: skip
    alone, behind = [], []
    for pair, verdict in zip(pairs, verdicts, strict=True):
        allowed = verdict.failed_check not in GUARD_CHECKS
        said_yes = allowed and await judge.same_request(pair.first, pair.second)
        alone.append(said_yes)
        behind.append(said_yes and verdict.passed)
    await channel.close()
    return alone, behind


def report(
    name: str, path: pathlib.Path, model: LocalMiniLMEmbedder, arguments: argparse.Namespace
) -> str:
    pairs = load_pairs(path)
    started_s = time.perf_counter()
    vectors = model.embed_now([pair.first for pair in pairs] + [pair.second for pair in pairs])
    embed_s = time.perf_counter() - started_s
    similarities = pair_similarities(pairs, vectors)
    alignment_verdicts(pairs)  # loads each language's dictionary: not part of the cost
    started_s = time.perf_counter()
    verdicts = alignment_verdicts(pairs)
    verify_us = (time.perf_counter() - started_s) / len(pairs) * 1e6
    modes: dict[str, Sequence[bool]] = {
        "off": [True] * len(pairs),
        "alignment": [verdict.passed for verdict in verdicts],
    }
    judge_note = "judge: not measured (no --judge-address given; it needs a real model)"
    if arguments.judge_address:
        alone, behind = asyncio.run(judge_verdicts(pairs, verdicts, arguments))
        modes["judge"], modes["alignment_and_judge"] = alone, behind
        judge_note = f"judge: {arguments.judge_instance}/{arguments.judge_model}"
    thresholds = sorted({*THRESHOLDS, DEFAULT_SIMILARITY_THRESHOLD})
    hits = sum(pair.should_hit for pair in pairs)
    languages = collections.Counter(pair.lang for pair in pairs)
    refusals = collections.Counter(v.failed_check for v, p in zip(verdicts, pairs, strict=True)
                                   if not v.passed and not p.should_hit)  # fmt: skip
    lines = [
        f"# Semantic cache quality: {name} set",
        "",
        f"Pairs: {len(pairs)} from {path.relative_to(REPOSITORY)} "
        f"({hits} paraphrases, {len(pairs) - hits} near misses; languages "
        f"{', '.join(f'{k} {v}' for k, v in sorted(languages.items()))})",
        f"Model: all-MiniLM-L6-v2 (offline), {2 * len(pairs)} prompts embedded in {embed_s:.1f} s; "
        f"verification {verify_us:.0f} us per pair on average (features not cached, "
        "dictionaries loaded)",
        f"Default threshold: {DEFAULT_SIMILARITY_THRESHOLD:.2f}; {judge_note}",
        "",
        markdown_table(evaluate(pairs, similarities, thresholds, modes)),
        "",
        "Near misses refused by the alignment verifier, by the first check that failed: "
        + ", ".join(f"{check} {count}" for check, count in refusals.most_common()),
        "",
        f"Paraphrases at the default threshold ({DEFAULT_SIMILARITY_THRESHOLD:.2f}), alignment:",
        "",
        paraphrase_losses(pairs, similarities, verdicts, DEFAULT_SIMILARITY_THRESHOLD),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=pathlib.Path, help="one pair file instead of all sets")
    parser.add_argument("--output-dir", type=pathlib.Path, default=OUTPUT_DIR)
    parser.add_argument("--judge-address", default="", help="ProviderService host:port")
    parser.add_argument("--judge-instance", default="")
    parser.add_argument("--judge-model", default="")
    arguments = parser.parse_args()
    sets = {arguments.pairs.stem: arguments.pairs.resolve()} if arguments.pairs else SETS
    model = LocalMiniLMEmbedder()
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    for name, path in sets.items():
        text = report(name, path, model, arguments)
        target = arguments.output_dir / f"semantic-quality-{name}.md"
        target.write_text(text)
        print(text)
        print(f"(written to {target})\n")


if __name__ == "__main__":
    main()
