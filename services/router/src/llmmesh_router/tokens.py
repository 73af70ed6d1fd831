"""Token estimates made before the provider reports the real count."""

from __future__ import annotations

from google.protobuf.message import Message

from llmmesh.validation import text_bytes

# English text averages about four characters per token across the common tokenizers; the
# estimate only sizes a reservation, which settles to the real count afterwards.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def estimate_prompt_tokens(request: Message, message_count: int) -> int:
    """Every text of the request counts (names, stop sequences, schemas, tool definitions as
    well as content), by its UTF-8 size: a request may cost more than it says, never less."""
    return TOKENS_PER_MESSAGE * message_count + estimate_text_tokens(text_bytes(request))


def estimate_text_tokens(text_chars: int) -> int:
    return (text_chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
