"""What the deployment tests compare the deployment files against: the repository itself.

Console scripts come from each service's pyproject.toml, variable names and ports from each
service's settings class, so a renamed setting or script fails the deployment tests.
"""

from __future__ import annotations

import importlib
import pathlib
import tomllib
from typing import Any

import pydantic
from pydantic_settings import BaseSettings

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = ("router", "ratelimiter", "cache", "provider")
# Variables outside every service prefix that any service reads.
SHARED_VARIABLES = frozenset({"LLMMESH_REDIS_URL", "LLMMESH_POLICY_FILE", "LLMMESH_LOG_LEVEL"})
# The port the deployment files give each service's plain-text grpc.health.v1 listener is
# its service port plus this (the services themselves open none unless told to).
HEALTH_PORT_OFFSET = 1000
# Who may call whom in the mesh (caller, callee): the runtime's built-in allow-lists.
ALLOWED_CALLS = frozenset(
    {("router", "ratelimiter"), ("router", "cache"), ("router", "provider"), ("cache", "provider")}
)

# The variables of transport security and probing that the deployment files set, as the
# runtime names them: per service, then shared. They are part of the services' settings
# once the TLS runtime reads them; until then the deployment tests accept them from this
# list, and test_transport_contract.py checks the list against the settings from then on.
TRANSPORT_SUFFIXES = ("LISTEN_HOST", "HEALTH_PORT", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE")
TRANSPORT_SUFFIXES_BY_SERVICE = {
    "router": ("PUBLIC_TLS_CERT_FILE", "PUBLIC_TLS_KEY_FILE", "PUBLIC_CLIENT_CA_FILE"),
    # The services that accept only mesh peers, from built-in allow-lists this overrides.
    "ratelimiter": ("ALLOWED_PEERS",),
    "cache": ("ALLOWED_PEERS",),
    "provider": ("ALLOWED_PEERS",),
}
SHARED_TRANSPORT_VARIABLES = frozenset({"LLMMESH_MESH_TOKEN_FILE", "LLMMESH_REDIS_CA_FILE"})


def own_transport_variables(service: str) -> set[str]:
    suffixes = TRANSPORT_SUFFIXES + TRANSPORT_SUFFIXES_BY_SERVICE[service]
    return {f"LLMMESH_{service.upper()}_{suffix}" for suffix in suffixes}


def pyproject(service: str) -> dict[str, Any]:
    with (REPO_ROOT / "services" / service / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def console_scripts(service: str) -> dict[str, str]:
    scripts: dict[str, str] = pyproject(service)["project"].get("scripts", {})
    return scripts


def settings_class(service: str) -> type[BaseSettings]:
    module = importlib.import_module(f"llmmesh_{service}.settings")
    cls: type[BaseSettings] = getattr(module, f"{service.capitalize()}Settings")
    return cls


def settings_variables(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable `cls` reads, as pydantic-settings derives the names."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{field_name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, pydantic.AliasChoices):
            names.update(choice.upper() for choice in alias.choices if isinstance(choice, str))
        else:  # an AliasPath reads a nested value of the variable its path starts with
            names.add(str(alias.path[0]).upper())
    return names


def service_variables(service: str) -> set[str]:
    """What the service reads, with the transport variables (see TRANSPORT_SUFFIXES)."""
    read = settings_variables(settings_class(service))
    return read | own_transport_variables(service) | SHARED_TRANSPORT_VARIABLES


def default_health_port(service: str) -> int:
    """The health port of `service` in the images, compose and the manifests."""
    return default_port(service) + HEALTH_PORT_OFFSET


def default(service: str, field_name: str) -> Any:
    return settings_class(service).model_fields[field_name].default


def stop_time_s(service: str, env: dict[str, str]) -> float:
    """How long a service may take to stop after SIGTERM, with the environment it is given:
    drain delay, grace period, and for the router the settlements of what it cancelled."""
    prefix = f"LLMMESH_{service.upper()}_"
    fields = ["drain_delay_s", "grace_period_s"]
    if service == "router":
        fields.append("settle_retry_budget_s")
    return sum(float(env.get(f"{prefix}{f.upper()}", default(service, f))) for f in fields)


def default_port(service: str) -> int:
    port: int = default(service, "port")
    return port


def dotenv(path: pathlib.Path) -> dict[str, str]:
    """`KEY=VALUE` lines as compose reads its `.env` (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, separator, value = stripped.partition("=")
        if not separator:
            raise ValueError(f"{path}: not KEY=VALUE: {line!r}")
        values[key.strip()] = value.strip()
    return values
