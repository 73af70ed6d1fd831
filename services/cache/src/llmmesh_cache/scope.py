"""Canonical forms of a cache scope: the exact key, the semantic partition and the prompt text.

An exact key covers everything that can change an answer: tenant, model, the whole
normalized conversation (system prompt included) and every generation parameter. A
semantic partition covers the same except the last user turn, which is the only part a
semantic match may vary; that turn, normalized, is the text that gets embedded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import unicodedata
from typing import Any

from llmmesh.cache.v1 import cache_pb2
from llmmesh.common.v1 import chat_pb2

# Bumped whenever the canonical encoding changes, so old keys can never match new requests.
KEY_VERSION = "v1"


@dataclasses.dataclass(frozen=True)
class ScopeKeys:
    """The derived keys of one request's scope."""

    # Identifies the exact request; doubles as the entry id, so an identical request
    # overwrites the same entry instead of adding a duplicate.
    entry_id: str
    # Groups entries whose answers may stand in for each other apart from the last user turn.
    partition: str
    # The normalized last user turn, or "" when the conversation does not end with one.
    prompt_text: str


# NFKC can expand a character 18-fold (U+FDFA); longer texts are keyed with whitespace
# folded only, so a huge message costs linear time and no multiplied memory. Such a last
# user turn is over the verification cap anyway, so it is only ever matched exactly.
NFKC_MAX_CHARS = 8192


def normalize_text(text: str) -> str:
    """Unicode NFKC (up to NFKC_MAX_CHARS) with whitespace runs folded; case is kept."""
    if len(text) <= NFKC_MAX_CHARS:
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.split())


def _canonical_float(value: float) -> str:
    # Proto floats are float32: round-trip through repr of a rounded value so 0.7 stays 0.7.
    return repr(round(value, 6)) if math.isfinite(value) else repr(value)


def canonical_parameters(parameters: chat_pb2.GenerationParameters) -> dict[str, Any]:
    """Every parameter that changes an answer, unset ones marked as unset."""
    return {
        "temperature": (
            _canonical_float(parameters.temperature) if parameters.HasField("temperature") else None
        ),
        "top_p": _canonical_float(parameters.top_p) if parameters.HasField("top_p") else None,
        "max_tokens": parameters.max_tokens,
        "stop": list(parameters.stop),
        "tools": [
            [tool.name, normalize_text(tool.description), tool.parameters_json_schema]
            for tool in parameters.tools
        ],
        "response_format": [
            int(parameters.response_format.type),
            parameters.response_format.json_schema,
        ],
        "seed": parameters.seed if parameters.HasField("seed") else None,
    }


def _canonical_message(message: chat_pb2.ChatMessage) -> list[Any]:
    return [int(message.role), message.name, normalize_text(message.content)]


def _digest(payload: Any) -> str:
    encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(encoded.encode()).hexdigest()[:32]


def last_user_turn(messages: list[chat_pb2.ChatMessage]) -> str:
    """The normalized text of the final message when a user wrote it, else ""."""
    if messages and messages[-1].role == chat_pb2.ROLE_USER:
        return normalize_text(messages[-1].content)
    return ""


def scope_keys(scope: cache_pb2.CacheScope, embedder_name: str) -> ScopeKeys:
    """Derives the exact key and the semantic partition of a scope.

    The embedder's name is part of the partition because vectors of different embedders
    live in different spaces and must never be compared.
    """
    messages = list(scope.messages)
    parameters = canonical_parameters(scope.parameters)
    conversation = [_canonical_message(message) for message in messages]
    entry_id = _digest([KEY_VERSION, "exact", scope.tenant, scope.model, parameters, conversation])
    prompt_text = last_user_turn(messages)
    prefix = conversation[:-1] if prompt_text else conversation
    partition = _digest(
        [KEY_VERSION, "semantic", scope.tenant, scope.model, parameters, prefix, embedder_name]
    )
    return ScopeKeys(entry_id=entry_id, partition=partition, prompt_text=prompt_text)
