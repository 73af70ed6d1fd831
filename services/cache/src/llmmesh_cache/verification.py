"""Checks that a semantically similar stored prompt really asks the same thing.

Embeddings place "a flight from London to Paris" and "from Paris to London" at 0.99
cosine, so similarity alone cannot decide a hit. Before a semantic hit is served, the two
prompts must agree on the facts that change an answer: numbers, named entities and their
order, negations, antonyms, units, the language, the requested output format, and which
word fills which role around relation words such as "from", "to" and "than".
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
import unicodedata

from llmmesh_cache import lexicons

_TOKEN = re.compile(r"[^\W\d_][\w'+#-]*|\d+(?:[.,]\d+)*|[$€£¥%]|°[cf]", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?:;\n]")
_POSSESSIVE = re.compile(r"\b([\w-]+)'s\s+([\w-]+)", re.UNICODE)
_CONTRACTIONS = (
    ("can't", "can not"), ("cannot", "can not"), ("won't", "will not"), ("n't", " not"),
    ("'re", " are"), ("'ve", " have"), ("'ll", " will"), ("'m", " am"), ("'d", " would"),
)  # fmt: skip
_NON_LATIN_SCRIPTS = (
    ("CJK", "zh"), ("HIRAGANA", "ja"), ("KATAKANA", "ja"), ("HANGUL", "ko"),
    ("CYRILLIC", "ru"), ("ARABIC", "ar"), ("HEBREW", "he"), ("GREEK", "el"),
    ("DEVANAGARI", "hi"), ("THAI", "th"),
)  # fmt: skip
FEATURE_CACHE_SIZE = 16_384

# Letters and marks that only some Latin-script languages use, each worth one marker hit.
_LANGUAGE_LETTERS = {"¿": "es", "¡": "es", "ñ": "es", "ç": "fr", "œ": "fr", "ß": "de",
                     "ä": "de", "ö": "de", "ü": "de", "ã": "pt", "õ": "pt"}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class PromptFeatures:
    """What of a prompt must match another prompt's for the two to share an answer."""

    numbers: tuple[str, ...]
    entities: tuple[str, ...]
    negations: int
    units: collections.Counter[str]
    formats: frozenset[str]
    language: str
    words: frozenset[str]
    content: tuple[str, ...]
    roles: dict[str, frozenset[str]]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a candidate may be served, and the first check that failed if not."""

    passed: bool
    failed_check: str = ""


def _expand(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    lowered = text.lower()
    for contraction, expansion in _CONTRACTIONS:
        lowered = lowered.replace(contraction, expansion)
    return lowered


def _canonical_number(token: str) -> str:
    value = float(token.replace(",", "")) if "," in token and "." not in token else None
    if value is None:
        value = float(token.replace(",", "."))
    return format(value, "g")


def _language(text: str, words: list[str]) -> str:
    # Only letters beyond ASCII can name a script or a telling accent; ASCII text skips the
    # per-character look-ups, which dominate verification time otherwise.
    scripts: collections.Counter[str] = collections.Counter()
    hits: collections.Counter[str] = collections.Counter()
    latin_letters = 0
    for char in "" if text.isascii() else text:
        if char.isascii():
            latin_letters += char.isalpha()
            continue
        if char in _LANGUAGE_LETTERS:
            hits[_LANGUAGE_LETTERS[char]] += 1
        if char.isalpha():
            name = unicodedata.name(char, "")
            script = next((lang for marker, lang in _NON_LATIN_SCRIPTS if marker in name), "")
            if script:
                scripts[script] += 1
            else:
                latin_letters += 1
    if scripts:
        script, count = scripts.most_common(1)[0]
        if count > latin_letters:
            return script
    distinct_words = set(words)
    for language, markers in lexicons.LANGUAGE_MARKERS.items():
        hits[language] += len(distinct_words & markers)
    ranked = hits.most_common(2)
    # A clear winner is required; a tie (shared words like "de", "que") stays unknown.
    if not ranked or ranked[0][1] == 0 or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return "unknown"
    return ranked[0][0]


def _entities(original: str) -> list[str]:
    """Capitalized words not opening a sentence, acronyms, and known names in any case."""
    found: list[str] = []
    sentence_start = True
    for match in re.finditer(r"[^\W\d_][\w'+#-]*|[.!?:;\n]", original, re.UNICODE):
        word = match.group()
        if _SENTENCE_END.fullmatch(word):
            sentence_start = True
            continue
        bare = word.removesuffix("'s").removesuffix("'")
        lowered = bare.lower()
        if lowered in lexicons.OUTPUT_FORMATS or lowered in lexicons.UNITS:
            # Compared by the format and unit checks ("JSON", "KM"), not as names.
            sentence_start = False
            continue
        capitalized = bare[:1].isupper() and lowered not in lexicons.STOPWORDS
        acronym = len(bare) > 1 and bare.isupper()
        if lowered in lexicons.KNOWN_ENTITIES or acronym or (capitalized and not sentence_start):
            found.append(lowered)
        sentence_start = False
    return found


def _roles(words: list[str]) -> dict[str, frozenset[str]]:
    """For each relation word, the content words it governs ("to" -> {"paris"})."""
    roles: dict[str, set[str]] = collections.defaultdict(set)
    marker = ""
    for word in words:
        if word in lexicons.RELATION_MARKERS:
            marker = word
        elif word in lexicons.DETERMINERS:
            continue
        else:
            if marker and word not in lexicons.STOPWORDS:
                roles[marker].add(word)
            marker = ""
    return {marker: frozenset(governed) for marker, governed in roles.items()}


@functools.lru_cache(maxsize=FEATURE_CACHE_SIZE)
def extract_features(prompt: str) -> PromptFeatures:
    """The facts of a prompt that verification compares (cached: stored prompts recur)."""
    original = _POSSESSIVE.sub(r"\2 of \1", unicodedata.normalize("NFKC", prompt))
    expanded = _expand(original)
    words = _TOKEN.findall(expanded)
    numbers: list[str] = []
    units: collections.Counter[str] = collections.Counter()
    formats: set[str] = set()
    negations = 0
    for word in words:
        if word[0].isdigit():
            numbers.append(_canonical_number(word))
        elif word in lexicons.NUMBER_WORDS:
            numbers.append(str(lexicons.NUMBER_WORDS[word]))
        if word in lexicons.UNITS:
            units[lexicons.UNITS[word]] += 1
        elif word in lexicons.UNIT_SYMBOLS:
            units[lexicons.UNIT_SYMBOLS[word]] += 1
        if word in lexicons.OUTPUT_FORMATS:
            formats.add(lexicons.OUTPUT_FORMATS[word])
        if word in lexicons.NEGATIONS:
            negations += 1
    content = tuple(
        word for word in words
        if word not in lexicons.STOPWORDS and word not in lexicons.RELATION_MARKERS
        and word[0].isalpha()
    )  # fmt: skip
    return PromptFeatures(
        numbers=tuple(numbers),
        entities=tuple(_entities(original)),
        negations=negations,
        units=units,
        formats=frozenset(formats),
        language=_language(expanded, words),
        words=frozenset(words),
        content=content,
        roles=_roles(words),
    )


def _contradicts(words_a: frozenset[str], words_b: frozenset[str]) -> bool:
    for first, second in lexicons.ANTONYM_PAIRS:
        if first in words_a and second in words_b and first not in words_b:
            return True
        if second in words_a and first in words_b and second not in words_b:
            return True
    only_a, only_b = words_a - words_b, words_b - words_a
    for word in only_a | only_b:
        other_side = only_b if word in only_a else only_a
        for prefix in lexicons.NEGATING_PREFIXES:
            stem = word[len(prefix) :]
            if word.startswith(prefix) and len(stem) > 3 and stem in other_side:
                return True
    return False


def _roles_disagree(a: PromptFeatures, b: PromptFeatures) -> bool:
    shared = set(a.content) & set(b.content)
    for marker in a.roles.keys() & b.roles.keys():
        if (a.roles[marker] & shared) != (b.roles[marker] & shared):
            return True
    return False


def _positions(content: tuple[str, ...], words: set[str]) -> dict[str, int]:
    return {word: position for position, word in enumerate(content) if word in words}


def _swapped_around(a: PromptFeatures, b: PromptFeatures) -> bool:
    """Two content words trade places around a third ("does a cat chase a dog" / "a dog ...
    a cat"). Moving a modifier next to its noun ("a list in Python" / "a Python list") swaps
    neighbours only, which leaves the meaning alone, so it does not count.
    """
    counts_a, counts_b = collections.Counter(a.content), collections.Counter(b.content)
    once = {word for word in counts_a if counts_a[word] == 1 and counts_b[word] == 1}
    in_a, in_b = _positions(a.content, once), _positions(b.content, once)
    ordered = sorted(once, key=in_a.__getitem__)
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if in_b[first] < in_b[second]:
                continue
            for middle in ordered:
                between_in_a = in_a[first] < in_a[middle] < in_a[second]
                if between_in_a and in_b[second] < in_b[middle] < in_b[first]:
                    return True
    return False


def _languages_differ(first: str, second: str) -> bool:
    # A short prompt often carries too few function words to tell its language; only two
    # recognized, different languages count as a mismatch.
    return "unknown" not in (first, second) and first != second


def verify(query: PromptFeatures, candidate: PromptFeatures) -> Verdict:
    """Passes only when nothing that changes the answer differs between the prompts."""
    checks = (
        ("numbers", query.numbers != candidate.numbers),
        ("entities", query.entities != candidate.entities),
        ("negation", query.negations != candidate.negations),
        ("units", query.units != candidate.units),
        ("format", query.formats != candidate.formats),
        ("language", _languages_differ(query.language, candidate.language)),
        ("antonym", _contradicts(query.words, candidate.words)),
        ("roles", _roles_disagree(query, candidate)),
        ("word_order", _swapped_around(query, candidate)),
    )
    for name, failed in checks:
        if failed:
            return Verdict(passed=False, failed_check=name)
    return Verdict(passed=True)
