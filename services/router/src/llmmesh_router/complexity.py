"""A fast heuristic guess of how hard a prompt is, to route "auto" requests.

It reads only surface features (length, code, reasoning words, number of questions, turns),
costs microseconds, and errs towards "moderate" when unsure.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

from llmmesh.common.v1 import chat_pb2
from llmmesh_router.policy import ComplexityLevel


class Complexity(enum.IntEnum):
    SIMPLE = 1
    MODERATE = 2
    COMPLEX = 3

    @property
    def level(self) -> ComplexityLevel:
        """The name the policy file uses for this complexity."""
        return LEVELS[self]


LEVELS: dict[Complexity, ComplexityLevel] = {
    Complexity.SIMPLE: "simple",
    Complexity.MODERATE: "moderate",
    Complexity.COMPLEX: "complex",
}


_REASONING = re.compile(
    r"\b(prove|derive|analy[sz]e|step[- ]by[- ]step|trade-?offs?|architect|design|optimi[sz]e|"
    r"refactor|debug|compare|evaluate|explain why|reason|algorithm|complexity|theorem|"
    r"implement|strategy|critique)\b",
    re.IGNORECASE,
)
_SIMPLE = re.compile(
    r"^(hi|hello|hey|thanks|thank you|what is|who is|when (was|is|did)|define|translate|"
    r"spell|convert)\b",
    re.IGNORECASE,
)
_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|[{};]\s*$", re.MULTILINE)

LONG_PROMPT_CHARS = 4000
SHORT_PROMPT_CHARS = 200


def classify(messages: Sequence[chat_pb2.ChatMessage]) -> Complexity:
    """Complexity of the conversation, judged mostly by its last user turn."""
    user_turns = [m.content for m in messages if m.role == chat_pb2.ROLE_USER]
    last = user_turns[-1] if user_turns else ""
    total_chars = sum(len(m.content) for m in messages)
    score = 0
    score += 2 if _CODE.search(last) else 0
    score += min(len(_REASONING.findall(last)), 3)
    score += 1 if last.count("?") >= 3 else 0
    score += 1 if total_chars > LONG_PROMPT_CHARS else 0
    score += 1 if len(messages) > 8 else 0
    if score >= 3:
        return Complexity.COMPLEX
    if (
        score == 0
        and len(last) < SHORT_PROMPT_CHARS
        and (_SIMPLE.search(last.strip()) or len(last) < 80)
    ):
        return Complexity.SIMPLE
    return Complexity.MODERATE
