"""What of a prompt verification compares, read in one linear pass over its tokens.

Request framing ("Could you tell me", "how do I", "please") and function words are
dropped; every other word becomes a content key (its canonical form, or a class such as
<speaker> or <not>); numbers, flags and the like stay exact. The order of content keys is
kept, with items joined by "and", "or" or a comma sorted, since "TCP and UDP" asks what
"UDP and TCP" asks.
"""

from __future__ import annotations

import dataclasses
import threading

import cachetools

from llmmesh_cache.verification.lemmas import canonical
from llmmesh_cache.verification.tokens import Kind, Token, language, normalize, tokenize
from llmmesh_cache.verification.words import (
    ENGLISH,
    LANGUAGES,
    NEGATION,
    NEVER,
    NUMBER_WORDS,
    WITHOUT,
    LanguageWords,
)

_NEGATIONS = frozenset({NEGATION, NEVER, WITHOUT})
_POLITE_OPENERS = frozenset({"please", "kindly", "hey", "hi", "hello", "so", "ok", "okay"})
_REQUEST_OBJECTS = frozenset({"me", "us"})
# No language's lists: every word of such a prompt is content, compared as written.
_NO_WORDS = dataclasses.replace(
    ENGLISH,
    function_words=frozenset(),
    request_verbs=frozenset(),
    phrases={},
    classes={},
    synonyms={},
    role_markers=frozenset(),
    coordinators=frozenset(),
)
_ITEM_BYTES = 120  # a rough per-item cost of the tuples and strings below, for budgets


@dataclasses.dataclass(frozen=True, slots=True)
class PromptFeatures:
    """The parts of a prompt that another prompt must share for the two to share an answer."""

    language: str
    # Numbers, flags, paths, operators, as a sorted multiset.
    exact: tuple[str, ...]
    # Negations (not, never, without), as a sorted multiset.
    negations: tuple[str, ...]
    # Every content key, exact tokens included.
    content: frozenset[str]
    # Content keys in order, coordinated items sorted within their group.
    sequence: tuple[str, ...]
    # Pairs of content words written next to each other, as written ("milk chocolate").
    adjacent: frozenset[tuple[str, str]]
    # (relation word, the content key it governs): ("to", "paris"), ("than", "java").
    roles: frozenset[tuple[str, str]]
    # Bytes of the prompt text a cache keeps beside these features, if any.
    key_bytes: int = 0

    @property
    def size_bytes(self) -> int:
        """About what this object holds in memory, for byte-bounded caches."""
        items = len(self.exact) + len(self.content) + len(self.sequence)
        return 400 + self.key_bytes + _ITEM_BYTES * (items + len(self.adjacent) + len(self.roles))


def _replace_phrases(tokens: list[Token], words: LanguageWords) -> list[Token]:
    """Multiword phrases replaced (longest first); cost linear in tokens."""
    longest = words.longest_phrase
    if not longest:
        return tokens
    out: list[Token] = []
    position = 0
    while position < len(tokens):
        for length in range(min(longest, len(tokens) - position), 1, -1):
            window = tokens[position : position + length]
            if any(token.kind is not Kind.WORD for token in window):
                continue
            replacement = words.phrases.get(tuple(token.text for token in window))
            if replacement is not None:
                out.extend(Token(Kind.WORD, text) for text in replacement)
                position += length
                break
        else:
            out.append(tokens[position])
            position += 1
    return out


def _request_frame_length(tokens: list[Token], start: int, words: LanguageWords) -> int:
    """How many tokens at a clause start only frame the request ("Please list", "Tell")."""
    position = start
    while _word_at(tokens, position) in _POLITE_OPENERS:
        position += 1
    if _word_at(tokens, position) in words.request_verbs:
        position += 1
        if _word_at(tokens, position) in _REQUEST_OBJECTS:
            position += 1
    return position - start


def _word_at(tokens: list[Token], index: int) -> str:
    token = tokens[index] if index < len(tokens) else None
    return token.text if token is not None and token.kind is Kind.WORD else ""


@dataclasses.dataclass
class _Reader:
    """Accumulates features while walking the tokens once."""

    language: str
    words: LanguageWords
    exact: list[str] = dataclasses.field(default_factory=list)
    negations: list[str] = dataclasses.field(default_factory=list)
    content: set[str] = dataclasses.field(default_factory=set)
    groups: list[list[str]] = dataclasses.field(default_factory=list)
    adjacent: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    roles: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    # Relation words governing the current coordinated group.
    group_markers: set[str] = dataclasses.field(default_factory=set)
    previous_surface: str = ""
    marker: str = ""
    marker_reached: bool = False
    join_next: bool = False

    def item(self, key: str, surface: str) -> None:
        """A content key in the running order."""
        self.content.add(key)
        marker = self.marker
        self.marker_reached = bool(marker)
        if self.join_next and self.groups:
            # An item joined to a group shares the group's role: "to buy or lease".
            self.roles.update((marker, key) for marker in self.group_markers)
            self.groups[-1].append(key)
        else:
            self.groups.append([key])
            self.group_markers = set()
        if marker:
            self.roles.add((marker, key))
            self.group_markers.add(marker)
        self.join_next = False
        if self.previous_surface:
            self.adjacent.add((self.previous_surface, surface))
        self.previous_surface = surface

    def gap(self, *, clause_end: bool = False) -> None:
        """A token between content words: they are no longer written side by side."""
        self.previous_surface = ""
        # A relation word governs the words right after it ("from a Python list"), up to
        # the next function word; determiners before its first word do not end it.
        if clause_end or self.marker_reached:
            self.marker = ""
            self.marker_reached = False
        if clause_end:
            self.join_next = False

    def word(self, text: str) -> None:
        words = self.words
        if text in words.coordinators:
            self.join_next = bool(self.groups)
            if text not in words.function_words:
                self.content.add(canonical(text, self.language, words))
            self.gap()
            return
        word_class = words.classes.get(text)
        if word_class in _NEGATIONS:
            self.negations.append(word_class)
            self.gap()
        elif word_class is not None:
            self.item(word_class, text)
        elif text in words.function_words:
            self.gap()
        elif self.language == "en" and text in NUMBER_WORDS:
            self.exact.append(NUMBER_WORDS[text])
            self.item("#" + NUMBER_WORDS[text], text)
        else:
            self.item(canonical(text, self.language, words), text)
        if text in words.role_markers:
            # Set after the word itself, so "from" governs the next word, not itself.
            self.marker = text
            self.marker_reached = False


def extract_features(prompt: str) -> PromptFeatures:
    """Reads a prompt; raises PromptTooLongError past tokens.MAX_VERIFIED_BYTES."""
    text = normalize(prompt)
    tokens = tokenize(text)
    code = language(text, tokens)
    words = LANGUAGES.get("en" if code == "unknown" else code, _NO_WORDS)
    lemma_language = "en" if code == "unknown" else code
    tokens = _replace_phrases(tokens, words)
    reader = _Reader(lemma_language, words)
    clause_start = True
    position = 0
    while position < len(tokens):
        if clause_start:
            clause_start = False
            skipped = _request_frame_length(tokens, position, words)
            if skipped:
                position += skipped
                reader.gap()
                continue
        token = tokens[position]
        position += 1
        if token.kind is Kind.END:
            clause_start = True
            reader.gap(clause_end=True)
        elif token.kind is Kind.JOINER:
            if token.text in words.coordinators:
                reader.join_next = bool(reader.groups)
            reader.gap()
        elif token.kind is Kind.EXACT:
            reader.exact.append(token.text)
            reader.item("#" + token.text, token.text)
        else:
            reader.word(token.text)
    sequence = tuple(key for group in reader.groups for key in sorted(group))
    return PromptFeatures(
        language=code,
        exact=tuple(sorted(reader.exact)),
        negations=tuple(sorted(reader.negations)),
        content=frozenset(reader.content),
        sequence=sequence,
        adjacent=frozenset(reader.adjacent),
        roles=frozenset(reader.roles),
    )


class FeatureCache:
    """Features of recently seen prompts, bounded in bytes: stored prompts are read again
    on every lookup that finds them. Safe to use from worker threads."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: cachetools.LRUCache[str, PromptFeatures] = cachetools.LRUCache(
            maxsize=max_bytes, getsizeof=self._cost
        )
        self._lock = threading.Lock()

    @staticmethod
    def _cost(features: PromptFeatures) -> int:
        return features.size_bytes

    def get(self, prompt: str) -> PromptFeatures:
        """The prompt's features; raises PromptTooLongError for a prompt never verified."""
        with self._lock:
            found = self._entries.get(prompt)
        if found is not None:
            return found
        found = extract_features(prompt)
        # The key (the prompt itself) is counted with the features it maps to.
        charged = dataclasses.replace(found, key_bytes=len(prompt.encode()))
        if charged.size_bytes <= self._max_bytes:
            with self._lock:
                self._entries[prompt] = charged
        return found

    @property
    def bytes_used(self) -> int:
        with self._lock:
            return int(self._entries.currsize)
