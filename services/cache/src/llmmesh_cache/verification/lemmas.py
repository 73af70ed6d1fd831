"""The canonical form of a word: its lemma (simplemma's dictionaries), then its synonym group.

"children" and "child", "summarize" and "summary", "km" and "kilometres" share a form.
Degree is kept: "fastest" becomes "fast+est", never "fast", since the fastest car and a
fast car are different questions. Dictionaries load per language on first use, in their
compact form (3 to 19 MB each).
"""

from __future__ import annotations

import functools

from llmmesh_cache.verification.words import IRREGULAR_DEGREES, LanguageWords

LEMMATIZED_LANGUAGES = frozenset({"en", "de", "fr", "es", "it", "pt"})


@functools.lru_cache(maxsize=1)
def _simplemma() -> object:
    # Imported on the first verification: an exact-only cache never loads it.
    import simplemma

    return simplemma


def lemma(word: str, language: str) -> str:
    """The dictionary form of a lowercased word, or the word itself when unknown."""
    if language not in LEMMATIZED_LANGUAGES:
        return word
    lemmatize = _simplemma().lemmatize  # type: ignore[attr-defined]
    found: str = lemmatize(word, lang=language, low_memory=True)
    return found.lower()


def canonical(word: str, language: str, words: LanguageWords) -> str:
    """The form two prompts must share for this word to count as matched."""
    if language == "en" and word in IRREGULAR_DEGREES:
        return word
    base = lemma(word, language)
    degree = ""
    if language == "en" and base != word:
        if word.endswith("est"):
            degree = "+est"
        elif word.endswith("er"):
            degree = "+er"
    return words.synonyms.get(word, words.synonyms.get(base, base)) + degree
