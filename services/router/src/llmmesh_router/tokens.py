"""Token estimates made before the provider reports the real count."""

from __future__ import annotations

from collections.abc import Iterable

from llmmesh.common.v1 import chat_pb2

# English text averages about four characters per token across the common tokenizers; the
# estimate only sizes a reservation, which settles to the real count afterwards.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def estimate_prompt_tokens(messages: Iterable[chat_pb2.ChatMessage]) -> int:
    return sum(TOKENS_PER_MESSAGE + len(m.content) // CHARS_PER_TOKEN + 1 for m in messages)


def estimate_text_tokens(text_chars: int) -> int:
    return (text_chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
