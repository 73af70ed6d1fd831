"""Splits a prompt into typed tokens in one linear pass, and tells its language.

Exact tokens (numbers, versions, IP addresses, dates, times, command-line flags, paths,
operators) are compared character for character: "3.11.2", "192.168.1.1" and "--hard"
are never parsed, rounded or lemmatized. Words are lowercased; contractions are expanded
first, and "3 p.m." becomes "3pm".
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import re
import unicodedata

from llmmesh_cache.verification.words import LANGUAGE_MARKERS

# Prompts longer than this (UTF-8 bytes, before and after NFKC normalization) are never
# verified, so they are served only by exact hits: every check then runs on bounded input.
MAX_VERIFIED_BYTES = 8192


class PromptTooLongError(ValueError):
    """The prompt is over MAX_VERIFIED_BYTES; it may only hit exactly."""


class Kind(enum.Enum):
    WORD = "word"
    EXACT = "exact"  # numbers, flags, paths, operators: compared as written
    JOINER = "joiner"  # a comma or a possessive 's: not content, but not nothing either
    END = "end"  # ends a sentence or clause


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str


_CONTRACTIONS = {
    "can't": "can not", "cannot": "can not", "won't": "will not", "shan't": "shall not",
    "n't": " not", "'re": " are", "'ve": " have", "'ll": " will", "'m": " am", "'d": " would",
    "let's": "let us", "e.g.": " ", "i.e.": " ", "etc.": " ",
    # The same, typed without the apostrophe.
    "whats": "what is", "dont": "do not", "doesnt": "does not", "didnt": "did not",
    "isnt": "is not", "arent": "are not", "wasnt": "was not", "cant": "can not",
    "couldnt": "could not", "shouldnt": "should not", "wouldnt": "would not", "im": "i am",
    "ive": "i have", "youre": "you are", "u": "you",
}  # fmt: skip
# "'s" after these words is "is" ("what's"); after other words it marks a possessive.
_IS_BEFORE = ("what", "that", "it", "he", "she", "there", "here", "who", "where", "how",
              "when", "why", "this")  # fmt: skip
_REWRITE = re.compile(
    r"(?P<time>(?<![\w.])(?P<hour>\d{1,2})\s*(?P<half>[ap])\.?\s?m\b\.?)"
    r"|(?P<is>\b(?:" + "|".join(_IS_BEFORE) + r")'s\b)"
    r"|(?P<contraction>can't|cannot|won't|shan't|let's|n't|'re|'ve|'ll|'m|'d\b"
    r"|\be\.g\.|\bi\.e\.|\betc\."
    r"|\b(?:whats|dont|doesnt|didnt|isnt|arent|wasnt|cant|couldnt|shouldnt|wouldnt|im|ive"
    r"|youre|u)\b)",
    re.IGNORECASE,
)
_TOKEN = re.compile(
    r"(?P<flag>(?<![\w-])--?[^\W\d_][\w-]*(?:=[^\s,;]+)?)"
    r"|(?P<path>(?:~|\.{1,2})?/[\w.~/-]*[\w/]|\b[\w.-]+/[\w./-]*\w)"
    r"|(?P<number>(?<![\w.])[-+]?\d+(?:[.,:/-]\d+)*(?:am\b|pm\b|st\b|nd\b|rd\b|th\b)?)"
    r"|(?P<dotted>[^\W\d_]\w*(?:\.\w+)+(?:\(\))?)"
    r"|(?P<word>[^\W\d_][^\W_]*[+#]*)"
    r"|(?P<operator>[<>=!]=+|[<>]|=+|&&|\|\||\*\*?|[|^~]|(?<=\s)\+(?=\s))"
    r"|(?P<symbol>[$€£¥%&]|°[cCfF])"
    r"|(?P<joiner>,|'s\b)"
    r"|(?P<end>[.!?;:\n]+)",
)
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+")
_NON_LATIN_SCRIPTS = (
    ("CJK", "zh"), ("HIRAGANA", "ja"), ("KATAKANA", "ja"), ("HANGUL", "ko"),
    ("CYRILLIC", "ru"), ("ARABIC", "ar"), ("HEBREW", "he"), ("GREEK", "el"),
    ("DEVANAGARI", "hi"), ("THAI", "th"),
)  # fmt: skip
_LATIN_ACCENTS = {"ß": "de", "ä": "de", "ö": "de", "ü": "de", "ñ": "es", "¿": "es", "¡": "es",
                  "ç": "fr", "œ": "fr", "ã": "pt", "õ": "pt"}  # fmt: skip


def normalize(prompt: str) -> str:
    """NFKC with both lengths capped; raises PromptTooLongError past MAX_VERIFIED_BYTES."""
    # A character is at least one byte: the cheap length test rejects most long prompts.
    if len(prompt) > MAX_VERIFIED_BYTES or len(prompt.encode()) > MAX_VERIFIED_BYTES:
        raise PromptTooLongError("prompt too long to verify")
    # NFKC can expand a character 18-fold (U+FDFA), so the result is measured again.
    normalized = unicodedata.normalize("NFKC", prompt).replace("\u2019", "'")
    if len(normalized.encode()) > MAX_VERIFIED_BYTES:
        raise PromptTooLongError("prompt too long to verify once normalized")
    return normalized


def _rewrite(match: re.Match[str]) -> str:
    if match.group("time"):
        return f"{match.group('hour')}{match.group('half').lower()}m"
    if match.group("is"):
        return match.group()[:-2] + " is"
    contraction = match.group().lower()
    return _CONTRACTIONS[contraction]


def tokenize(text: str) -> list[Token]:
    """Typed tokens of normalized text, left to right."""
    tokens: list[Token] = []
    for match in _TOKEN.finditer(_REWRITE.sub(_rewrite, text)):
        kind = match.lastgroup
        value = match.group()
        if kind == "word" or kind == "symbol":
            tokens.append(Token(Kind.WORD, value.lower()))
        elif kind == "number":
            if _THOUSANDS.fullmatch(value):
                value = value.replace(",", "")
            tokens.append(Token(Kind.EXACT, value.lower()))
        elif kind == "dotted":
            tokens.append(Token(Kind.EXACT, value.lower()))
        elif kind in ("flag", "path", "operator"):
            # Case matters in flags and paths ("-R" and "-r" differ).
            tokens.append(Token(Kind.EXACT, value))
        elif kind == "joiner":
            tokens.append(Token(Kind.JOINER, value.lower()))
        else:
            tokens.append(Token(Kind.END, value))
    return tokens


def language(text: str, tokens: list[Token]) -> str:
    """An ISO 639-1 code, or "unknown" when no language clearly wins."""
    if not text.isascii():
        scripts: collections.Counter[str] = collections.Counter()
        latin = 0
        for char in text:
            if not char.isalpha():
                continue
            if char.isascii():
                latin += 1
                continue
            name = unicodedata.name(char, "")
            script = next((code for marker, code in _NON_LATIN_SCRIPTS if marker in name), "")
            if script:
                scripts[script] += 1
            else:
                latin += 1
        if scripts:
            script, count = scripts.most_common(1)[0]
            if count > latin:
                return script
    words = {token.text for token in tokens if token.kind is Kind.WORD}
    hits = collections.Counter(
        {code: len(words & markers) for code, markers in LANGUAGE_MARKERS.items()}
    )
    for char, code in _LATIN_ACCENTS.items():
        if char in text:
            hits[code] += 1
    ranked = hits.most_common(2)
    if ranked[0][1] == 0 or ranked[0][1] == ranked[1][1]:
        return "unknown"
    return ranked[0][0]
