"""The value built from a schema is one the schema accepts, for the shapes tool and answer
schemas take."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from llmmesh.schema_examples import example_for

SCHEMAS: dict[str, dict[str, Any]] = {
    "flat object": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "bounds and formats": {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email"},
            "code": {"type": "string", "minLength": 20, "maxLength": 24},
            "short": {"type": "string", "maxLength": 3},
            "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "count": {"type": "integer", "minimum": 10, "multipleOf": 5},
            "below": {"type": "integer", "maximum": -3},
        },
        "required": ["when", "email", "code", "short", "score", "count", "below"],
    },
    "enum, const and nullable": {
        "type": "object",
        "properties": {
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "version": {"const": 2},
            "note": {"type": ["string", "null"]},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
        },
        "required": ["unit", "version", "note", "maybe"],
    },
    "arrays": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "minItems": 2,
                "maxItems": 2,
            },
            "none": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
        },
        "required": ["tags", "pair", "none"],
    },
    "local refs and allOf": {
        "$defs": {"place": {"type": "object", "properties": {"city": {"type": "string"}}}},
        "type": "object",
        "properties": {
            "from": {"$ref": "#/$defs/place"},
            "to": {"allOf": [{"$ref": "#/$defs/place"}, {"required": ["city"]}]},
        },
        "required": ["from", "to"],
    },
    "recursive": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    },
}


@pytest.mark.parametrize("schema", list(SCHEMAS.values()), ids=list(SCHEMAS))
def test_the_example_matches_its_schema(schema: dict[str, Any]) -> None:
    jsonschema.validate(example_for(schema), schema)


def test_the_example_is_the_same_every_time() -> None:
    schema = SCHEMAS["bounds and formats"]
    assert example_for(schema) == example_for(schema)


def test_a_remote_ref_is_never_fetched() -> None:
    assert example_for({"$ref": "https://example.com/schema.json"}) is None
