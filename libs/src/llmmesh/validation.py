"""Checks every service applies to a conversation, its sampling settings, tools and schemas.

Each returns every problem at once, as BadRequest field violations named by their path
under `field` (so the cache, which nests the conversation in a scope, names
`scope.messages[2].role`). Services add their own rules on top. Every check costs time linear
in the size of the request, which the gRPC message limit bounds.

`text_bytes_by_field` measures every text a message holds, found from its descriptor rather
than from a list of fields, so a field added to a contract later is inside the size budget
(and the token estimate) from the start. `list_length_violations` bounds every repeated
field the same way, and runs first: a request of millions of empty messages then costs one
comparison instead of millions of checks (and as many violations held in memory).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from llmmesh.common.v1 import chat_pb2
from llmmesh.runtime.errors import FieldViolation

KNOWN_ROLES = frozenset(
    {chat_pb2.ROLE_SYSTEM, chat_pb2.ROLE_USER, chat_pb2.ROLE_ASSISTANT, chat_pb2.ROLE_TOOL}
)
# Tool and schema names, as OpenAI and Anthropic both accept them.
NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# The image formats every backend that takes images accepts.
IMAGE_MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The largest inline image a service accepts unless its settings say otherwise (Anthropic's
# per-image limit; OpenAI's is larger).
DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_URL_CHARS = 8192
# OpenAI's limit on tools per request.
MAX_TOOLS = 128
# Bounds on what one schema, all of a request's schemas, and one call may hold; a real tool
# schema is a few KiB. Checking 256 KiB of schemas costs about 75 ms of CPU.
MAX_SCHEMA_CHARS = 64 * 1024
MAX_TOTAL_SCHEMA_CHARS = 256 * 1024
MAX_TOOL_CALL_ID_CHARS = 256
# OpenAI's limit on its `safety_identifier`, where `attribution.user` goes.
MAX_USER_CHARS = 128
MAX_TAGS = 16
MAX_TAG_CHARS = 256


def conversation_violations(
    messages: Sequence[chat_pb2.ChatMessage],
    field: str = "messages",
    *,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> list[FieldViolation]:
    if not messages:
        return [FieldViolation(field, "at least one message is required")]
    violations: list[FieldViolation] = []
    call_ids: set[str] = set()
    for index, message in enumerate(messages):
        path = f"{field}[{index}]"
        if message.role not in KNOWN_ROLES:
            violations.append(FieldViolation(f"{path}.role", f"unknown role {message.role}"))
        violations.extend(_content_violations(message, path, max_image_bytes))
        violations.extend(_tool_call_violations(message, path, call_ids))
        if message.role == chat_pb2.ROLE_TOOL and message.tool_call_id not in call_ids:
            violations.append(
                FieldViolation(
                    f"{path}.tool_call_id",
                    "must answer a tool call of an earlier assistant message",
                )
            )
        elif message.role != chat_pb2.ROLE_TOOL and message.tool_call_id:
            violations.append(FieldViolation(f"{path}.tool_call_id", "only for ROLE_TOOL"))
    if all(m.role == chat_pb2.ROLE_SYSTEM for m in messages):
        violations.append(FieldViolation(field, "must hold a user or assistant message"))
    return violations


def _content_violations(
    message: chat_pb2.ChatMessage, path: str, max_image_bytes: int
) -> list[FieldViolation]:
    if message.content and message.parts:
        return [FieldViolation(f"{path}.parts", "set either content or parts, not both")]
    if not message.parts:
        # An assistant turn that only calls tools, and a tool that returned nothing, are real.
        may_be_empty = message.role == chat_pb2.ROLE_TOOL or (
            message.role == chat_pb2.ROLE_ASSISTANT and message.tool_calls
        )
        if not message.content.strip() and not may_be_empty:
            return [FieldViolation(f"{path}.content", "must not be empty")]
        return []
    violations = []
    for index, part in enumerate(message.parts):
        part_path = f"{path}.parts[{index}]"
        kind = part.WhichOneof("part")
        if kind is None:
            violations.append(FieldViolation(part_path, "must hold text, an image or reasoning"))
        elif kind == "text" and not part.text.strip():
            violations.append(FieldViolation(f"{part_path}.text", "must not be empty"))
        elif kind == "image":
            if message.role != chat_pb2.ROLE_USER:
                violations.append(FieldViolation(f"{part_path}.image", "only in user messages"))
            violations.extend(_image_violations(part.image, f"{part_path}.image", max_image_bytes))
        elif kind == "reasoning" and message.role != chat_pb2.ROLE_ASSISTANT:
            violations.append(
                FieldViolation(f"{part_path}.reasoning", "only in assistant messages")
            )
    return violations


def _image_violations(
    image: chat_pb2.ImagePart, path: str, max_image_bytes: int
) -> list[FieldViolation]:
    source = image.WhichOneof("source")
    violations = []
    if image.media_type and image.media_type not in IMAGE_MEDIA_TYPES:
        violations.append(
            FieldViolation(f"{path}.media_type", f"must be one of {sorted(IMAGE_MEDIA_TYPES)}")
        )
    if source is None:
        violations.append(FieldViolation(path, "must hold a url or data"))
    elif source == "url":
        if not image.url.startswith(("https://", "http://")):
            violations.append(FieldViolation(f"{path}.url", "must be an http(s) URL"))
        elif len(image.url) > MAX_IMAGE_URL_CHARS:
            violations.append(
                FieldViolation(f"{path}.url", f"longer than {MAX_IMAGE_URL_CHARS} characters")
            )
    else:
        if not image.data:
            violations.append(FieldViolation(f"{path}.data", "must not be empty"))
        elif len(image.data) > max_image_bytes:
            violations.append(
                FieldViolation(
                    f"{path}.data", f"{len(image.data)} bytes; at most {max_image_bytes}"
                )
            )
        if not image.media_type:
            violations.append(FieldViolation(f"{path}.media_type", "required with data"))
    return violations


def _tool_call_violations(
    message: chat_pb2.ChatMessage, path: str, call_ids: set[str]
) -> list[FieldViolation]:
    if message.tool_calls and message.role != chat_pb2.ROLE_ASSISTANT:
        return [FieldViolation(f"{path}.tool_calls", "only in assistant messages")]
    violations = []
    for index, call in enumerate(message.tool_calls):
        call_path = f"{path}.tool_calls[{index}]"
        if not call.id or len(call.id) > MAX_TOOL_CALL_ID_CHARS:
            violations.append(
                FieldViolation(f"{call_path}.id", f"must hold 1 to {MAX_TOOL_CALL_ID_CHARS} chars")
            )
        elif call.id in call_ids:
            violations.append(FieldViolation(f"{call_path}.id", "repeats an earlier call's id"))
        call_ids.add(call.id)
        if not NAME_PATTERN.fullmatch(call.name):
            violations.append(FieldViolation(f"{call_path}.name", _NAME_RULE))
        if not isinstance(_json_or_none(call.arguments_json), dict):
            violations.append(
                FieldViolation(f"{call_path}.arguments_json", "must be a JSON object")
            )
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
    if parameters.HasField("top_k") and parameters.top_k <= 0:
        violations.append(FieldViolation(f"{field}.top_k", "must be positive"))
    if parameters.max_tokens < 0:
        violations.append(FieldViolation(f"{field}.max_tokens", "must not be negative"))
    for index, stop in enumerate(parameters.stop):
        if not stop:
            violations.append(FieldViolation(f"{field}.stop[{index}]", "must not be empty"))
    if parameters.reasoning_effort not in chat_pb2.ReasoningEffort.values():
        violations.append(FieldViolation(f"{field}.reasoning_effort", "unknown effort"))
    violations.extend(_tool_violations(parameters, field))
    violations.extend(_response_format_violations(parameters.response_format, field))
    return violations


def _tool_violations(parameters: chat_pb2.GenerationParameters, field: str) -> list[FieldViolation]:
    violations = []
    if len(parameters.tools) > MAX_TOOLS:
        violations.append(FieldViolation(f"{field}.tools", f"at most {MAX_TOOLS} tools"))
        return violations
    total = sum(len(tool.parameters_json_schema) for tool in parameters.tools)
    if total + len(parameters.response_format.json_schema) > MAX_TOTAL_SCHEMA_CHARS:
        violations.append(
            FieldViolation(
                f"{field}.tools", f"schemas longer than {MAX_TOTAL_SCHEMA_CHARS} characters in all"
            )
        )
        return violations
    names: set[str] = set()
    for index, tool in enumerate(parameters.tools):
        path = f"{field}.tools[{index}]"
        if not NAME_PATTERN.fullmatch(tool.name):
            violations.append(FieldViolation(f"{path}.name", _NAME_RULE))
        elif tool.name in names:
            violations.append(FieldViolation(f"{path}.name", f"repeats tool {tool.name!r}"))
        names.add(tool.name)
        if tool.parameters_json_schema:
            schema, problem = parse_json_schema(tool.parameters_json_schema)
            if problem is None and schema is not None and schema.get("type") != "object":
                problem = 'must describe an object ("type": "object")'
            if problem is not None:
                violations.append(FieldViolation(f"{path}.parameters_json_schema", problem))
    choice = parameters.tool_choice
    path = f"{field}.tool_choice"
    if choice.mode not in chat_pb2.ToolChoiceMode.values():
        violations.append(FieldViolation(f"{path}.mode", "unknown mode"))
    elif choice.mode == chat_pb2.TOOL_CHOICE_MODE_NAMED:
        if choice.name not in names:
            violations.append(FieldViolation(f"{path}.name", "must name one of the tools"))
    elif choice.name:
        violations.append(FieldViolation(f"{path}.name", "only with TOOL_CHOICE_MODE_NAMED"))
    if choice.mode == chat_pb2.TOOL_CHOICE_MODE_REQUIRED and not parameters.tools:
        violations.append(FieldViolation(f"{path}.mode", "requires tools"))
    return violations


def _response_format_violations(form: chat_pb2.ResponseFormat, field: str) -> list[FieldViolation]:
    path = f"{field}.response_format"
    if form.type not in chat_pb2.ResponseFormatType.values():
        return [FieldViolation(f"{path}.type", "unknown type")]
    if form.type != chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        if form.json_schema:
            return [
                FieldViolation(f"{path}.json_schema", "only with RESPONSE_FORMAT_TYPE_JSON_SCHEMA")
            ]
        return []
    violations = []
    _, problem = parse_json_schema(form.json_schema)
    if problem is not None:
        violations.append(FieldViolation(f"{path}.json_schema", problem))
    if form.name and not NAME_PATTERN.fullmatch(form.name):
        violations.append(FieldViolation(f"{path}.name", _NAME_RULE))
    return violations


def attribution_violations(
    attribution: chat_pb2.Attribution, field: str = "attribution"
) -> list[FieldViolation]:
    violations = []
    if len(attribution.user) > MAX_USER_CHARS:
        violations.append(
            FieldViolation(f"{field}.user", f"longer than {MAX_USER_CHARS} characters")
        )
    if len(attribution.tags) > MAX_TAGS:
        violations.append(FieldViolation(f"{field}.tags", f"at most {MAX_TAGS} tags"))
    for key, value in attribution.tags.items():
        if not key or len(key) > MAX_TAG_CHARS or len(value) > MAX_TAG_CHARS:
            violations.append(
                FieldViolation(
                    f"{field}.tags", f"keys and values hold 1 to {MAX_TAG_CHARS} characters"
                )
            )
            break
    return violations


def parse_json_schema(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The schema document, or what is wrong with it: not JSON, not an object, or not a
    JSON Schema (checked against the draft-07 metaschema, which later drafts' schemas also
    pass: what they added are keywords draft 07 leaves free)."""
    if len(text) > MAX_SCHEMA_CHARS:
        return None, f"longer than {MAX_SCHEMA_CHARS} characters"
    schema = _json_or_none(text)
    if not isinstance(schema, dict):
        return None, "must be a JSON object"
    from fastjsonschema import JsonSchemaValueException

    try:
        _metaschema_check()(schema)
    except JsonSchemaValueException as error:
        # fastjsonschema calls the value it checks "data": here that is the schema.
        return None, f"not a valid JSON Schema: {error.message.replace('data', 'schema', 1)[:200]}"
    except RecursionError:
        return None, "nested too deeply"
    return schema, None


@functools.cache
def _metaschema_check() -> Callable[[Any], Any]:
    """The draft-07 metaschema compiled to a Python function, once per process.

    fastjsonschema validates a 56 KiB schema in 16 ms where jsonschema takes 120 ms (draft 07)
    to 550 ms (2020-12), which one request with many tools would spend on the event loop.
    The metaschema ships with the package: nothing is fetched.
    """
    import fastjsonschema

    document = importlib.resources.files("llmmesh").joinpath("json_schema_draft07.json")
    return fastjsonschema.compile(json.loads(document.read_text()))


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


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


_NAME_RULE = "must match [a-zA-Z0-9_-]{1,64}"
