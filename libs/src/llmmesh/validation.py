"""Checks every service applies to a conversation and its sampling settings.

Each returns every problem at once, as BadRequest field violations named by their path
under `field` (so the cache, which nests the conversation in a scope, names
`scope.messages[2].role`). Services add their own rules on top.

`text_bytes_by_field` measures every text a message holds, found from its descriptor rather
than from a list of fields, so a field added to a contract later is inside the size budget
(and the token estimate) from the start. `list_length_violations` bounds every repeated
field the same way, and runs first: a request of millions of empty messages then costs one
comparison instead of millions of checks (and as many violations held in memory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from llmmesh.common.v1 import chat_pb2
from llmmesh.runtime.errors import FieldViolation

KNOWN_ROLES = frozenset(
    {chat_pb2.ROLE_SYSTEM, chat_pb2.ROLE_USER, chat_pb2.ROLE_ASSISTANT, chat_pb2.ROLE_TOOL}
)


def conversation_violations(
    messages: Sequence[chat_pb2.ChatMessage], field: str = "messages"
) -> list[FieldViolation]:
    if not messages:
        return [FieldViolation(field, "at least one message is required")]
    violations = []
    for index, message in enumerate(messages):
        if message.role not in KNOWN_ROLES:
            violations.append(
                FieldViolation(f"{field}[{index}].role", f"unknown role {message.role}")
            )
        if not message.content.strip():
            violations.append(FieldViolation(f"{field}[{index}].content", "must not be empty"))
    if all(m.role == chat_pb2.ROLE_SYSTEM for m in messages):
        violations.append(FieldViolation(field, "must hold a user or assistant message"))
    return violations


def sampling_violations(
    parameters: chat_pb2.GenerationParameters, field: str = "parameters"
) -> list[FieldViolation]:
    violations = []
    if parameters.HasField("temperature") and not _within(parameters.temperature, 0.0, 2.0):
        violations.append(FieldViolation(f"{field}.temperature", "must be within [0, 2]"))
    if parameters.HasField("top_p") and not (
        _within(parameters.top_p, 0.0, 1.0) and parameters.top_p > 0
    ):
        violations.append(FieldViolation(f"{field}.top_p", "must be within (0, 1]"))
    if parameters.max_tokens < 0:
        violations.append(FieldViolation(f"{field}.max_tokens", "must not be negative"))
    for index, stop in enumerate(parameters.stop):
        if not stop:
            violations.append(FieldViolation(f"{field}.stop[{index}]", "must not be empty"))
    return violations


def _within(value: float, low: float, high: float) -> bool:
    return not math.isnan(value) and low <= value <= high


def list_length_violations(
    message: Message, max_items: int, path: str = ""
) -> list[FieldViolation]:
    """A violation for every repeated field or map, at any depth, holding more than
    `max_items` elements; the elements of a list that is too long are not visited."""
    violations = []
    for field, value in message.ListFields():
        name = f"{path}.{field.name}" if path else field.name
        if field.is_repeated and len(value) > max_items:
            violations.append(
                FieldViolation(name, f"holds {len(value)} items; the limit is {max_items}")
            )
        elif field.message_type is None:
            continue
        elif field.message_type.GetOptions().map_entry:
            # Entries are named by position: a key is the caller's text, never echoed.
            for index, item in enumerate(value.values()):
                if isinstance(item, Message):
                    violations.extend(list_length_violations(item, max_items, f"{name}[{index}]"))
        elif field.is_repeated:
            for index, item in enumerate(value):
                violations.extend(list_length_violations(item, max_items, f"{name}[{index}]"))
        else:
            violations.extend(list_length_violations(value, max_items, name))
    return violations


def text_bytes_by_field(message: Message) -> dict[str, int]:
    """UTF-8 bytes of every string and bytes value in `message` (nested messages, repeated
    fields and maps included), summed per top-level field that holds any."""
    sizes = {}
    for field, value in message.ListFields():
        size = _field_bytes(field, value)
        if size:
            sizes[field.name] = size
    return sizes


def text_bytes(message: Message) -> int:
    """UTF-8 bytes of every string and bytes value in `message`, however deep."""
    return sum(_field_bytes(field, value) for field, value in message.ListFields())


def _field_bytes(field: FieldDescriptor, value: Any) -> int:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return sum(_value_bytes(key) + _value_bytes(item) for key, item in value.items())
    if field.is_repeated:
        return sum(_value_bytes(item) for item in value)
    return _value_bytes(value)


def _value_bytes(value: object) -> int:
    if isinstance(value, Message):
        return text_bytes(value)
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    if isinstance(value, bytes):
        return len(value)
    return 0
