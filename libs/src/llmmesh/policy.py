"""Loads the one YAML policy file every service reads, and names the bad field when it is wrong.

Each service validates only its own section (`models`, `limits`, `cache`, `providers`) plus
the shared `tenants` list, with a pydantic model of its own.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import pathlib
from typing import Any, Literal, TypeVar

import pydantic
import yaml

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

DEFAULT_POLICY = "default_policy.yaml"


# What a catalog model can do. A request that needs tools, a JSON schema, images, embeddings
# or reasoning goes only to models that declare it; "json" is JSON mode without a schema.
Capability = Literal["chat", "tools", "json", "json_schema", "vision", "embeddings", "reasoning"]


class PolicyError(ValueError):
    """The policy file is missing, unreadable, or has a field that is wrong."""


class StrictModel(pydantic.BaseModel):
    """Base for policy sections: unknown fields are errors, so typos fail at start."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Tenant(StrictModel):
    """A caller of the mesh, identified by one of its API keys."""

    name: str = pydantic.Field(min_length=1)
    tier: str = "default"
    # Keys are stored hashed so the policy file holds no secret.
    api_keys_sha256: list[str] = pydantic.Field(default_factory=list)

    @pydantic.field_validator("api_keys_sha256")
    @classmethod
    def _hex_digests(cls, digests: list[str]) -> list[str]:
        for digest in digests:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError("each entry must be a lowercase hex sha256 digest of a key")
        return digests


def hash_api_key(api_key: str) -> str:
    """The form in which a key is written in the policy file."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def read_policy_document(path: str | pathlib.Path | None) -> dict[str, Any]:
    """The parsed policy file, or the packaged default policy when no path is given."""
    if path is None or str(path) == "":
        text = importlib.resources.files("llmmesh").joinpath(DEFAULT_POLICY).read_text()
        source = f"<embedded {DEFAULT_POLICY}>"
    else:
        try:
            text = pathlib.Path(path).read_text()
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from exc
        source = str(path)
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: the top level must be a mapping of sections")
    return document


def parse_section(document: dict[str, Any], model: type[ModelT], *sections: str) -> ModelT:
    """Validates the named top-level sections of a policy document with one model.

    Errors are rewritten as `field.path: message` so the operator sees which field is wrong.
    """
    subset = {name: document[name] for name in sections if name in document}
    try:
        return model.model_validate(subset)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{_dotted(error['loc'])}: {error['msg']}" for error in exc.errors())
        raise PolicyError(f"invalid policy: {problems}") from exc


def _dotted(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "<root>"
