"""The verifier refuses near misses that embeddings score as near-identical, on any wording.

Examples here are made up for these tests; the held-out set that measures the verifier
(tests/data/heldout_pairs.jsonl) is never used to design or tune it.
"""

from __future__ import annotations

import time

import pytest

from llmmesh_cache.verification import (
    MAX_VERIFIED_BYTES,
    PromptTooLongError,
    extract_features,
    verify,
)


def verdict(first: str, second: str) -> tuple[bool, str]:
    result = verify(extract_features(first), extract_features(second))
    return result.passed, result.failed_check


@pytest.mark.parametrize(
    ("first", "second", "failed_check"),
    [
        # A word on one side has no match on the other: whatever it is, a miss.
        ("Max daily dose of acetaminophen for an adult?", "Max daily dose of acetaminophen "
         "for a child?", "unmatched_words"),
        ("Is the short-term capital gains rate 15%?", "Is the long-term capital gains rate "
         "15%?", "unmatched_words"),
        ("What is the weather in Oslo today?", "What is the weather in Oslo tomorrow?",
         "unmatched_words"),
        ("Does he have a backbone?", "Does he lack a backbone?", "unmatched_words"),
        ("Is a little coffee bad for me?", "Is a lot of coffee bad for me?", "unmatched_words"),
        ("What is the hottest planet?", "What is the coldest planet?", "unmatched_words"),
        ("Is this legal?", "Is this illegal?", "unmatched_words"),
        ("What is the capital of Austria?", "What is the capital of Australia?",
         "unmatched_words"),
        ("How many grams in a cup of flour?", "How many ounces in a cup of flour?",
         "unmatched_words"),
        ("List the planets in JSON", "List the planets as a table", "unmatched_words"),
        ("What is the fastest car?", "What is a fast car?", "unmatched_words"),
        ("What is the capital of France?", "Quelle est la capitale de la France ?", "language"),
        # Numbers, versions, flags, times, addresses and dates agree as written.
        ("What does git reset --hard do?", "What does git reset --soft do?",
         "numbers_and_symbols"),
        ("Set an alarm for 3pm", "Set an alarm for 3 a.m.", "numbers_and_symbols"),
        ("What is new in Python 3.11.2?", "What is new in Python 3.11.3?", "numbers_and_symbols"),
        ("Is 192.168.1.1 private?", "Is 192.169.1.1 private?", "numbers_and_symbols"),
        ("Which weekday is 12.05.2024?", "Which weekday is 05.12.2024?", "numbers_and_symbols"),
        ("Give me three tips for sleep", "Give me five tips for sleep", "numbers_and_symbols"),
        ("Is x == y true?", "Is x === y true?", "numbers_and_symbols"),
        # Negations agree.
        ("Is coffee bad for you?", "Isn't coffee bad for you?", "negation"),
        ("Should I use tabs?", "Should I never use tabs?", "negation"),
        # The same words in roles that changed.
        ("Book a flight from London to Paris", "Book a flight from Paris to London", "roles"),
        ("Convert 100 USD to EUR", "Convert 100 EUR to USD", "roles"),
        ("How many ounces are in a pound?", "How many pounds are in an ounce?", "roles"),
        ("Is Rust faster than Go?", "Is Go faster than Rust?", "roles"),
        ("Can a landlord sue a tenant?", "Can a tenant sue a landlord?", "word_order"),
        ("Can my employer fire me?", "Can I fire my employer?", "word_order"),
        ("How do I make milk chocolate?", "How do I make chocolate milk?", "word_order"),
    ],
)  # fmt: skip
def test_near_misses_fail_a_named_check(first: str, second: str, failed_check: str) -> None:
    assert verdict(first, second) == (False, failed_check)
    assert verdict(second, first) == (False, failed_check)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("What is France's capital?", "What's the capital of France?"),
        ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
        ("In Python, how do I reverse a list?", "How to reverse a list in Python?"),
        ("I don't understand recursion", "I do not understand recursion"),
        ("Give me 3 tips for sleep", "Give me three tips for sleep"),
        ("Convert 5 kilometers to miles", "Convert 5 km to miles"),
        ("What are the differences between TCP and UDP?", "Differences between UDP and TCP?"),
        ("Summarize the French Revolution.", "Give me a summary of the French Revolution."),
        ("List the planets of the solar system.", "What are the planets of the solar system?"),
        ("Could you please explain how vaccines work?", "How do vaccines work?"),
        ("What's the largest ocean?", "What is the biggest ocean?"),
        ("Is it cheaper to buy or lease a car?", "Is it cheaper to lease or buy a car?"),
        ("What's new in Python 3.11.2?", "What is new in Python 3.11.2?"),
        ("Is 192.168.1.1 a private address?", "Is 192.168.1.1 a private address ?"),
        ("Wie viele Einwohner hat Berlin?", "Wie viele Einwohner hat Berlin eigentlich?"),
        ("whats the capital of france", "What is the capital of France?"),
        ("can u explain how vaccines work", "How do vaccines work?"),
    ],
)
def test_paraphrases_pass(first: str, second: str) -> None:
    assert verdict(first, second) == (True, "")
    assert verdict(second, first) == (True, "")


def test_prompts_over_the_cap_are_never_verified() -> None:
    with pytest.raises(PromptTooLongError):
        extract_features("a" * (MAX_VERIFIED_BYTES + 1))
    # 600 characters that NFKC expands 18-fold: short before, far too long after.
    with pytest.raises(PromptTooLongError):
        extract_features("\ufdfa" * 600)
    assert extract_features("z " * (MAX_VERIFIED_BYTES // 2 - 1)).content == {"z"}


def _words(count: int, offset: int) -> list[str]:
    return [f"w{offset + index}x" for index in range(count)]


def test_a_block_swap_at_the_cap_is_refused_in_linear_time() -> None:
    # The attack that took the previous verifier 35 s: three blocks, the last two swapped.
    first, second, third = _words(250, 0), _words(300, 1000), _words(300, 2000)
    stored = " ".join(first + second + third)
    asked = " ".join(first + third + second)
    assert len(asked.encode()) <= MAX_VERIFIED_BYTES
    started = time.perf_counter()
    result = verify(extract_features(asked), extract_features(stored))
    elapsed_s = time.perf_counter() - started
    assert (result.passed, result.failed_check) == (False, "word_order")
    # Linear work on 850 words takes milliseconds; a generous bound for a loaded machine.
    assert elapsed_s < 1.0


def test_thousands_of_numbers_at_the_cap_verify_quickly() -> None:
    numbers = " ".join(str(value) for value in range(1700))
    assert len(numbers.encode()) <= MAX_VERIFIED_BYTES
    started = time.perf_counter()
    assert verdict(numbers, numbers + " 1") == (False, "numbers_and_symbols")
    assert time.perf_counter() - started < 1.0
