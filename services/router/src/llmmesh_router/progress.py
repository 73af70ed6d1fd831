"""How much of an answer a caller has received, by kind of piece, for the errors that end a
stream part-way (STREAM_INTERRUPTED, STREAM_STALLED): nothing passes for complete."""

from __future__ import annotations

import dataclasses

from llmmesh.common.v1 import chat_pb2
from llmmesh_router.tokens import estimate_text_tokens

Piece = chat_pb2.TextDelta | chat_pb2.ToolCallDelta | chat_pb2.ReasoningDelta


@dataclasses.dataclass
class StreamProgress:
    # Pieces of any kind: the first is the point of no return for a retry or a fallback.
    deltas: int = 0
    # Characters of answer text.
    chars: int = 0
    tool_call_fragments: int = 0
    reasoning_deltas: int = 0
    # Characters of every kind (text, tool names and arguments, reasoning): what was paid for.
    generated_chars: int = 0

    def count(self, piece: Piece) -> None:
        self.deltas += 1
        if isinstance(piece, chat_pb2.TextDelta):
            self.chars += len(piece.text)
            self.generated_chars += len(piece.text)
        elif isinstance(piece, chat_pb2.ToolCallDelta):
            self.tool_call_fragments += 1
            self.generated_chars += len(piece.name) + len(piece.arguments_fragment)
        else:
            self.reasoning_deltas += 1
            self.generated_chars += len(piece.text)

    def describe(self) -> str:
        return f"{self.deltas} deltas ({self.chars} characters)"

    def metadata(self) -> dict[str, str]:
        return {
            "delivered_deltas": str(self.deltas),
            "delivered_chars": str(self.chars),
            "delivered_tool_call_fragments": str(self.tool_call_fragments),
            "delivered_reasoning_deltas": str(self.reasoning_deltas),
            "delivered_tokens_estimate": str(estimate_text_tokens(self.generated_chars)),
        }
