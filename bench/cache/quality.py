"""Writes the semantic-cache quality table: hit and false-hit rates per threshold.

    HF_HUB_OFFLINE=1 python -m bench.cache.quality [--pairs FILE] [--output FILE]

Embeds every labeled pair with the offline all-MiniLM-L6-v2 model (the cache's
`local-embeddings` extra) and reports, for each threshold, how many paraphrases would be
served and how many near misses would be served wrongly, with and without verification.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import time

from llmmesh_cache.embedders.local import LocalMiniLMEmbedder
from llmmesh_cache.policy import DEFAULT_SIMILARITY_THRESHOLD
from llmmesh_cache.quality import evaluate, load_pairs, markdown_table, pair_similarities

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_PAIRS = REPOSITORY / "services/cache/tests/data/semantic_pairs.jsonl"
THRESHOLDS = (0.70, 0.75, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=pathlib.Path, default=DEFAULT_PAIRS)
    parser.add_argument("--output", type=pathlib.Path, help="also write the report here")
    arguments = parser.parse_args()

    pairs = load_pairs(arguments.pairs)
    started_s = time.perf_counter()
    vectors = LocalMiniLMEmbedder().embed_now(
        [pair.first for pair in pairs] + [pair.second for pair in pairs]
    )
    embed_s = time.perf_counter() - started_s
    similarities = pair_similarities(pairs, vectors)
    thresholds = sorted({*THRESHOLDS, DEFAULT_SIMILARITY_THRESHOLD})
    categories = collections.Counter(pair.category for pair in pairs)
    lines = [
        f"Pairs: {len(pairs)} ({', '.join(f'{k} {v}' for k, v in sorted(categories.items()))})",
        f"Model: all-MiniLM-L6-v2 (offline), {2 * len(pairs)} prompts embedded in {embed_s:.1f} s",
        f"Default threshold: {DEFAULT_SIMILARITY_THRESHOLD:.2f}",
        "",
        markdown_table(evaluate(pairs, similarities, thresholds)),
    ]
    report = "\n".join(lines)
    print(report)
    if arguments.output:
        arguments.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
