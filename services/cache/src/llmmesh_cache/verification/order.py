"""Word order and roles: the same words can ask another question when they trade places.

"Can a landlord sue a tenant" and "can a tenant sue a landlord" share every word. Three
reorderings are refused: three content words whose order is fully reversed (a, b, c
becoming c, b, a, with anything between), which is how subject and object swap around a
verb; two words written side by side that appear side by side in the other order, as
written ("milk chocolate" / "chocolate milk"); and moving more than a short phrase (more
than MAX_MOVED_WORDS content words out of place), as when paragraphs trade places. Moving
a short phrase ("In Python, how do I reverse a list" / "How do I reverse a list in
Python") passes. The checks are linear, or n log n, in the number of content words.
"""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Iterable

from llmmesh_cache.verification.features import PromptFeatures

# How many content words may stand elsewhere ("at sea level" fronted moves two).
MAX_MOVED_WORDS = 4


def _governed(roles: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    by_marker: dict[str, set[str]] = collections.defaultdict(set)
    for marker, key in roles:
        by_marker[marker].add(key)
    return by_marker


def roles_disagree(first: Iterable[tuple[str, str]], second: Iterable[tuple[str, str]]) -> bool:
    """A relation word governs one word here and another there ("to Paris" / "to London").

    A relation word that governs an extra word on one side only ("how to convert km to
    miles" / "convert km to miles") is no disagreement: the role did not move.
    """
    in_first, in_second = _governed(first), _governed(second)
    for marker in in_first.keys() & in_second.keys():
        only_first = in_first[marker] - in_second[marker]
        only_second = in_second[marker] - in_first[marker]
        if only_first and only_second:
            return True
    return False


def _has_reversed_triple(order: list[int]) -> bool:
    """True when some i < j < k have order[i] > order[j] > order[k] (linear time)."""
    if len(order) < 3:
        return False
    suffix_min = list(itertools.accumulate(reversed(order), min))[::-1]
    prefix_max = order[0]
    for index in range(1, len(order) - 1):
        value = order[index]
        if prefix_max > value > suffix_min[index + 1]:
            return True
        prefix_max = max(prefix_max, value)
    return False


def _in_place(order: list[int]) -> int:
    """The length of the longest increasing subsequence: words that kept their order."""
    tails: list[int] = []
    for value in order:
        index = bisect.bisect_left(tails, value)
        if index == len(tails):
            tails.append(value)
        else:
            tails[index] = value
    return len(tails)


def swapped(first: PromptFeatures, second: PromptFeatures) -> bool:
    """The prompts order their shared content words in a way that changes roles."""
    counts_first = collections.Counter(first.sequence)
    counts_second = collections.Counter(second.sequence)
    once = {key for key, count in counts_first.items() if count == 1 and counts_second[key] == 1}
    position_in_second = {key: i for i, key in enumerate(second.sequence) if key in once}
    order = [position_in_second[key] for key in first.sequence if key in once]
    if _has_reversed_triple(order) or len(order) - _in_place(order) > MAX_MOVED_WORDS:
        return True
    return any(
        left != right and (right, left) in second.adjacent and (left, right) not in second.adjacent
        for left, right in first.adjacent
    )
