"""Reads docker-compose.yml as Compose does: .env interpolation, then `include` merged in."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import yaml

from .repo_facts import REPO_ROOT, dotenv

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_FILE = REPO_ROOT / ".env"

# $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, or $NAME.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}"
    r"|(?P<bare>\w+))"
)


class UnsetVariableError(KeyError):
    """A variable the compose file needs has no value and no default."""


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        operator = match["operator"] or ""
        current = variables.get(name)
        missing = current is None or (operator.startswith(":") and current == "")
        if missing and operator.endswith("-"):
            return str(match["argument"])
        if current is None or (missing and operator.endswith("?")):
            raise UnsetVariableError(name)
        return current

    return _VARIABLE.sub(substitute, value)


def load_raw(path: pathlib.Path) -> dict[str, Any]:
    with path.open() as file:
        document: dict[str, Any] = yaml.safe_load(file)
    return document


def include_paths(document: dict[str, Any]) -> list[pathlib.Path]:
    paths = []
    for entry in document.get("include", []):
        for path in [entry] if isinstance(entry, str) else _as_list(entry["path"]):
            paths.append(COMPOSE_FILE.parent / path)
    return paths


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def load_project() -> dict[str, Any]:
    """The interpolated model with every included file's resources merged in."""
    variables = dotenv(ENV_FILE)
    project: dict[str, Any] = interpolate(load_raw(COMPOSE_FILE), variables)
    for path in include_paths(project):
        included = interpolate(load_raw(path), variables)
        for section in ("services", "volumes", "networks", "configs", "secrets"):
            for name, resource in included.get(section, {}).items():
                target = project.setdefault(section, {})
                if name in target:
                    raise ValueError(f"{section}.{name} in {path} conflicts with the includer")
                target[name] = resource
    project.pop("include", None)
    return project
