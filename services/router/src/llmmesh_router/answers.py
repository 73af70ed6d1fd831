"""A streamed answer put back together: text, tool calls by index, reasoning.

`Complete` returns it whole and the cache stores it; a cache hit replays it as stream pieces
in the order a stream sends them (reasoning, text, then each tool call).
"""

from __future__ import annotations

import dataclasses

from llmmesh.cache.v1 import cache_pb2
from llmmesh.common.v1 import chat_pb2
from llmmesh_router.progress import Piece


@dataclasses.dataclass
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = dataclasses.field(default_factory=list)


class AnswerAssembly:
    """Collects the pieces of one answer as they stream past."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self._calls: dict[int, _CallParts] = {}
        self._reasoning: list[str] = []
        self._signature = ""

    def add(self, piece: Piece) -> None:
        if isinstance(piece, chat_pb2.TextDelta):
            self.chunks.append(piece.text)
        elif isinstance(piece, chat_pb2.ToolCallDelta):
            # The id and name come with a call's first fragment; later ones carry arguments.
            call = self._calls.setdefault(piece.index, _CallParts())
            call.id = call.id or piece.id
            call.name = call.name or piece.name
            call.arguments.append(piece.arguments_fragment)
        else:
            self._reasoning.append(piece.text)
            self._signature = piece.signature or self._signature

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def tool_calls(self) -> list[chat_pb2.ToolCall]:
        return [
            chat_pb2.ToolCall(id=call.id, name=call.name, arguments_json="".join(call.arguments))
            for _, call in sorted(self._calls.items())
        ]

    def reasoning_part(self) -> chat_pb2.ReasoningPart | None:
        if not self._reasoning and not self._signature:
            return None
        return chat_pb2.ReasoningPart(text=self.reasoning, signature=self._signature)


def replayed_pieces(answer: cache_pb2.CachedAnswer) -> list[Piece]:
    """A stored answer as the pieces a stream of it sends: the reasoning, the text in its
    original chunking, then each tool call whole in one delta."""
    pieces: list[Piece] = []
    if answer.HasField("reasoning"):
        pieces.append(
            chat_pb2.ReasoningDelta(
                text=answer.reasoning.text, signature=answer.reasoning.signature
            )
        )
    pieces += [chat_pb2.TextDelta(text=chunk) for chunk in answer.chunks]
    pieces += [
        chat_pb2.ToolCallDelta(
            index=index, id=call.id, name=call.name, arguments_fragment=call.arguments_json
        )
        for index, call in enumerate(answer.tool_calls)
    ]
    return pieces
