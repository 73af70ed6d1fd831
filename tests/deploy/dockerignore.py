"""Decides, as the Docker builder does, whether a path of the build context is left out.

Patterns follow .dockerignore's rules: Go filepath.Match globs plus `**`, paths relative to
the context root, `!` re-includes, and the last matching pattern wins. A pattern that
matches a directory leaves out everything below it.
"""

from __future__ import annotations

import pathlib
import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    reinclude: bool


def read_rules(path: pathlib.Path) -> list[Rule]:
    rules = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        reinclude = text.startswith("!")
        glob = posixpath.normpath(text.removeprefix("!").strip()).lstrip("/")
        rules.append(Rule(re.compile(_glob_to_regex(glob)), reinclude))
    return rules


def is_ignored(relative_path: str, rules: list[Rule]) -> bool:
    candidates = [relative_path, *_parents(relative_path)]
    ignored = False
    for rule in rules:
        if any(rule.pattern.fullmatch(candidate) for candidate in candidates):
            ignored = not rule.reinclude
    return ignored


def _parents(relative_path: str) -> list[str]:
    parts = relative_path.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts))]


def _glob_to_regex(glob: str) -> str:
    regex = []
    index = 0
    while index < len(glob):
        if glob.startswith("**/", index):
            regex.append("(?:.*/)?")
            index += 3
        elif glob.startswith("**", index):
            regex.append(".*")
            index += 2
        elif glob[index] == "*":
            regex.append("[^/]*")
            index += 1
        elif glob[index] == "?":
            regex.append("[^/]")
            index += 1
        elif glob[index] == "[":
            end = glob.index("]", index)
            body = glob[index + 1 : end]
            regex.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            index = end + 1
        else:
            regex.append(re.escape(glob[index]))
            index += 1
    return "".join(regex)
