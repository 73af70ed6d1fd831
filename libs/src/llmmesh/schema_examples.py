"""A value that matches a JSON Schema, built from the schema alone (the simulated backend answers
with it, and the fake upstreams answer a structured-output request with it).

It covers what tool and answer schemas use: types, enum and const, object properties,
arrays with length bounds, string length and common formats, number bounds and multiples,
anyOf/oneOf (the first branch that is not null), allOf (merged) and local `$ref`s. Anything
it cannot satisfy (a `pattern`, say) gets a plain value of the right type. No network: a
`$ref` that is not local to the document is treated as any value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Past this depth only what a schema requires is built (no optional property, no array item
# beyond minItems), so a recursive schema (a tree node whose children are nodes) ends.
MINIMAL_DEPTH = 6
# A schema that requires its own recursion without end gets null here.
MAX_DEPTH = 24

_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "hostname": "example.com",
}


def example_for(schema: Mapping[str, Any]) -> Any:
    """A value the schema accepts, the same every time."""
    return _Builder(schema).value(schema, "value", 0)


class _Builder:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root

    def value(self, schema: Any, name: str, depth: int) -> Any:
        if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
            return None
        schema = self._resolved(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for keyword in ("anyOf", "oneOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and branches:
                chosen = next((b for b in branches if not _is_null(b)), branches[0])
                return self.value(chosen, name, depth + 1)
        kind = _type_of(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "string":
            return _string(schema, name)
        if kind == "integer":
            return int(_number(schema, integer=True))
        if kind == "number":
            return _number(schema, integer=False)
        if kind == "boolean":
            return True
        return None

    def _resolved(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        reference = schema.get("$ref")
        if isinstance(reference, str):
            target = self._pointer(reference)
            rest = {key: value for key, value in schema.items() if key != "$ref"}
            schema = {**target, **rest} if isinstance(target, Mapping) else rest
        parts = schema.get("allOf")
        if isinstance(parts, list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts:
                if isinstance(part, Mapping):
                    part = self._resolved(part, depth + 1)
                    properties = {**merged.get("properties", {}), **part.get("properties", {})}
                    required = [*merged.get("required", []), *part.get("required", [])]
                    merged = {**merged, **part, "properties": properties, "required": required}
            schema = merged
        return schema

    def _pointer(self, reference: str) -> Any:
        if not reference.startswith("#"):
            return {}
        node: Any = self._root
        for token in reference[1:].split("/"):
            if not token:
                continue
            token = token.replace("~1", "/").replace("~0", "~")
            node = node.get(token) if isinstance(node, Mapping) else None
        return node

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        # Every declared property: strict schemas require them all, and others allow them.
        return {key: self.value(subschema, key, depth + 1) for key, subschema in properties.items()}

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items: list[Any] = []
        if isinstance(prefix, list):
            items = [self.value(item, name, depth + 1) for item in prefix]
        low = schema.get("minItems", 0)
        low = low if isinstance(low, int) else 0
        high = schema.get("maxItems")
        wanted = low if depth >= MINIMAL_DEPTH else max(low, 1)
        if isinstance(high, int):
            wanted = min(wanted, high)
        count = max(wanted, len(items))
        item_schema = schema.get("items")
        while len(items) < count:
            items.append(self.value(item_schema, name, depth + 1))
        return items


def _is_null(schema: Any) -> bool:
    return isinstance(schema, Mapping) and schema.get("type") == "null"


def _type_of(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _string(schema: Mapping[str, Any], name: str) -> str:
    text = _FORMATS.get(str(schema.get("format")), f"example {name}")
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = text + "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _number(schema: Mapping[str, Any], *, integer: bool) -> float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    step = schema.get("multipleOf")
    value = 1.0
    if isinstance(low, (int, float)):
        value = float(low) + (1 if "minimum" not in schema else 0)
    elif isinstance(high, (int, float)):
        value = min(value, float(high) - (0 if "maximum" in schema else 1))
    if isinstance(step, (int, float)) and step > 0:
        value = math.ceil(value / step) * step
    return float(math.ceil(value)) if integer else value
