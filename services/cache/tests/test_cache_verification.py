"""The verifier refuses near misses that embeddings score as near-identical."""

from __future__ import annotations

import pytest

from llmmesh_cache.verification import extract_features, verify


def verdict(first: str, second: str) -> tuple[bool, str]:
    result = verify(extract_features(first), extract_features(second))
    return result.passed, result.failed_check


@pytest.mark.parametrize(
    ("first", "second", "failed_check"),
    [
        ("Book a flight from London to Paris", "Book a flight from Paris to London", "entities"),
        ("Is a cat bigger than a dog?", "Is a dog bigger than a cat?", "roles"),
        ("Does the cat chase the dog?", "Does the dog chase the cat?", "word_order"),
        ("Is coffee bad for you?", "Isn't coffee bad for you?", "negation"),
        ("Should I use tabs?", "Should I never use tabs?", "negation"),
        ("What is the capital of France?", "What is the capital of Germany?", "entities"),
        ("What is the hottest planet?", "What is the coldest planet?", "antonym"),
        ("Is this legal?", "Is this illegal?", "antonym"),
        ("Convert 10 km to miles", "Convert 12 km to miles", "numbers"),
        ("Give me three tips for sleep", "Give me five tips for sleep", "numbers"),
        ("How many grams in a cup of flour?", "How many ounces in a cup of flour?", "units"),
        ("List the planets in JSON", "List the planets as a table", "format"),
        ("What is the capital of France?", "Quelle est la capitale de la France ?", "language"),
    ],
)
def test_near_misses_fail_a_named_check(first: str, second: str, failed_check: str) -> None:
    assert verdict(first, second) == (False, failed_check)
    assert verdict(second, first) == (False, failed_check)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("What is the capital of France?", "Which city is the capital of France?"),
        ("What is France's capital?", "What's the capital of France?"),
        ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
        ("I don't understand recursion", "I do not understand recursion"),
        ("Give me 3 tips for sleep", "Give me three tips for sleep"),
        ("Convert 5 kilometers to miles", "Convert 5 km to miles"),
    ],
)
def test_paraphrases_pass(first: str, second: str) -> None:
    assert verdict(first, second) == (True, "")
