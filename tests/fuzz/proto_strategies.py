"""Hypothesis strategies for any protobuf message, built from its descriptor.

Every field of the message type and of the types it nests is drawn (or left unset), so a
field added to a contract is fuzzed from the day it exists. Values lean towards what breaks
servers: empty, whitespace, huge and non-ASCII text (including characters that need
surrogates in UTF-16 and NUL), the names a service knows (so some requests go all the way),
enum numbers no one declared, NaN and infinities, and repeated fields with thousands of
elements. Hand-written: the PyPI packages for this (hypothesis-protobuf, hypothesis-pb) were
last released in 2015 and 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_DEPTH = 4
HUGE_CHARS = 200_000
# One message in this many may hold huge strings and repeated fields of thousands of
# elements; the rest stay small, so a run of thousands of cases stays quick.
HUGE_ONE_IN = 10
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

Strategy = st.SearchStrategy[Any]


def texts(known: Sequence[str] = (), huge: bool = False) -> Strategy:
    """Strings a caller could send: ordinary, known names, edge cases, and (`huge`) very long."""
    edge = st.sampled_from(["", " ", "\n\t", "\x00", "é", "数据", "\U0001f600", "\u202e", "%"])
    strategies = [
        st.text(max_size=40),
        st.sampled_from(list(known)) if known else st.nothing(),
        edge,
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    ]
    if huge:
        repeated = edge | st.text(min_size=1, max_size=3)
        strategies.append(st.builds(str.__mul__, repeated, st.integers(1_000, HUGE_CHARS)))
    return st.one_of(strategies)


def _scalar(field: FieldDescriptor, known: Sequence[str], huge: bool) -> Strategy:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return texts(known, huge)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=300)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        declared = [value.number for value in field.enum_type.values]
        return st.sampled_from(declared) | st.integers(*INT32)
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        width = 32 if kind == FieldDescriptor.TYPE_FLOAT else 64
        return st.floats(width=width) | st.sampled_from([0.0, 0.5, 1.0, 2.0])
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return st.integers(*INT64) | st.integers(-10, 10_000)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    return st.integers(*INT32) | st.integers(-10, 10_000)


def _field(field: FieldDescriptor, known: Sequence[str], depth: int, huge: bool) -> Strategy:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        entry = field.message_type
        if entry.GetOptions().map_entry:
            keys = _scalar(entry.fields_by_name["key"], known, huge=False)
            values = _field(entry.fields_by_name["value"], known, depth + 1, huge=False)
            return st.dictionaries(keys, values, max_size=4)
        if depth >= MAX_DEPTH:
            return st.nothing()
        element = _messages(entry, known, depth + 1, huge)
    else:
        element = _scalar(field, known, huge)
    if not field.is_repeated:
        return element
    few = st.lists(element, max_size=4)
    if not huge:
        return few
    # Thousands of copies of one small element (10,000 empty messages, say).
    small = (
        _messages(field.message_type, known, depth + 1, huge=False)
        if field.type == FieldDescriptor.TYPE_MESSAGE
        else _scalar(field, known, huge=False)
    )
    return few | st.builds(lambda item, count: [item] * count, small, st.integers(100, 12_000))


def messages(descriptor: Descriptor, known: Sequence[str] = ()) -> Strategy:
    """Messages of `descriptor`'s type with any subset of its fields set; `known` are names
    (models, say) that let some of them through a service's checks."""
    small = _messages(descriptor, known, 0, huge=False)
    huge = _messages(descriptor, known, 0, huge=True)
    return st.integers(1, HUGE_ONE_IN).flatmap(lambda draw: huge if draw == 1 else small)


def _messages(descriptor: Descriptor, known: Sequence[str], depth: int, huge: bool) -> Strategy:
    cls = GetMessageClass(descriptor)
    optional = {field.name: _field(field, known, depth, huge) for field in descriptor.fields}

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            target = getattr(message, name)
            if isinstance(value, dict):
                _fill_map(target, descriptor.fields_by_name[name], value)
            elif isinstance(value, list):
                target.extend(value)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)


def _fill_map(target: Any, field: FieldDescriptor, values: dict[Any, Any]) -> None:
    value_is_message = (
        field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
    )
    for key, value in values.items():
        if value_is_message:
            target[key].CopyFrom(value)
        else:
            target[key] = value
