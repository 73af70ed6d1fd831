"""A streamed answer put back together, and replayed from the cache as the same calls."""

from __future__ import annotations

from llmmesh.cache.v1 import cache_pb2
from llmmesh.common.v1 import chat_pb2
from llmmesh_router.answers import AnswerAssembly, replayed_pieces
from llmmesh_router.progress import StreamProgress

CALL = chat_pb2.ToolCallDelta


def _interleaved() -> list[chat_pb2.TextDelta | chat_pb2.ToolCallDelta | chat_pb2.ReasoningDelta]:
    return [
        chat_pb2.ReasoningDelta(text="think "),
        chat_pb2.ReasoningDelta(text="more", signature="sig"),
        chat_pb2.TextDelta(text="Checking "),
        chat_pb2.TextDelta(text="both."),
        CALL(index=1, id="b", name="weather", arguments_fragment=""),
        CALL(index=0, id="a", name="weather", arguments_fragment='{"city"'),
        CALL(index=1, arguments_fragment='{"city": "Rome"}'),
        CALL(index=0, arguments_fragment=': "Oslo"}'),
    ]


def test_tool_calls_are_assembled_by_index_whatever_order_their_fragments_arrive_in() -> None:
    answer = AnswerAssembly()
    for piece in _interleaved():
        answer.add(piece)
    assert answer.text == "Checking both."
    assert answer.reasoning == "think more"
    assert [(c.id, c.name, c.arguments_json) for c in answer.tool_calls()] == [
        ("a", "weather", '{"city": "Oslo"}'),
        ("b", "weather", '{"city": "Rome"}'),
    ]
    assert answer.reasoning_part() == chat_pb2.ReasoningPart(text="think more", signature="sig")


def test_a_stored_answer_replays_as_pieces_that_assemble_to_the_same_answer() -> None:
    original = AnswerAssembly()
    for piece in _interleaved():
        original.add(piece)
    stored = cache_pb2.CachedAnswer(
        chunks=original.chunks, tool_calls=original.tool_calls(),
        reasoning=original.reasoning_part(),
    )  # fmt: skip
    replayed = AnswerAssembly()
    pieces = replayed_pieces(stored)
    for piece in pieces:
        replayed.add(piece)
    assert replayed.text == original.text
    assert replayed.tool_calls() == original.tool_calls()
    assert replayed.reasoning_part() == original.reasoning_part()
    # Reasoning first, then the text in its chunks, then each call whole.
    assert [type(p).__name__ for p in pieces] == [
        "ReasoningDelta", "TextDelta", "TextDelta", "ToolCallDelta", "ToolCallDelta",
    ]  # fmt: skip


def test_a_plain_answer_replays_without_reasoning_or_calls() -> None:
    pieces = replayed_pieces(cache_pb2.CachedAnswer(chunks=["a", "b"]))
    assert pieces == [chat_pb2.TextDelta(text="a"), chat_pb2.TextDelta(text="b")]


def test_progress_counts_every_kind_of_piece_and_what_was_paid_for() -> None:
    progress = StreamProgress()
    for piece in _interleaved():
        progress.count(piece)
    metadata = progress.metadata()
    assert metadata["delivered_deltas"] == "8"
    assert metadata["delivered_chars"] == str(len("Checking both."))
    assert metadata["delivered_tool_call_fragments"] == "4"
    assert metadata["delivered_reasoning_deltas"] == "2"
    assert int(metadata["delivered_tokens_estimate"]) > len("Checking both.") // 4
