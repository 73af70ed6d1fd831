"""Typed settings from environment variables, one class per service.

Each service's variables carry its own prefix (`LLMMESH_ROUTER_PORT`, ...) so one
environment can configure all four; a few values are shared by every service and read
without the service prefix (`LLMMESH_POLICY_FILE`, `LLMMESH_LOG_LEVEL`, `LLMMESH_REDIS_URL`).
"""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic_settings import BaseSettings, SettingsConfigDict


def shared(name: str) -> pydantic.AliasChoices:
    """Reads a setting from `LLMMESH_<NAME>`, whatever the service's prefix."""
    return pydantic.AliasChoices(f"llmmesh_{name.lower()}")


class ServiceSettings(BaseSettings):
    """What every service needs to serve gRPC; subclasses set the prefix and the port."""

    model_config = SettingsConfigDict(env_prefix="LLMMESH_", extra="ignore", frozen=True)

    # Loopback unless told otherwise: containers and manifests set the pod's address.
    listen_host: str = "127.0.0.1"
    port: int = pydantic.Field(default=0, ge=0, le=65535)
    # How long in-flight streams may run on after SIGTERM before they are cancelled.
    grace_period_s: float = pydantic.Field(default=20.0, ge=0)
    # How long health reports NOT_SERVING before the server stops accepting, so load
    # balancers can route new calls elsewhere first.
    drain_delay_s: float = pydantic.Field(default=0.0, ge=0)
    # How often dependencies (Redis, peers) are probed for health.
    health_probe_interval_s: float = pydantic.Field(default=1.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = pydantic.Field(
        default="info", validation_alias=shared("LOG_LEVEL")
    )
    # The YAML policy file; empty means the embedded default policy.
    policy_file: str = pydantic.Field(default="", validation_alias=shared("POLICY_FILE"))
    max_message_bytes: int = pydantic.Field(default=16 * 1024 * 1024, gt=0)
    # Serve with uvloop's event loop where it is installed.
    use_uvloop: bool = True
    # Serve metrics for Prometheus to scrape on this port (0: off); needs the
    # `prometheus` extra of llmmesh-libs.
    prometheus_port: int = pydantic.Field(default=0, ge=0, le=65535)

    # The mesh identity (llmmesh.runtime.mesh_security): this service's certificate and key,
    # served with mTLS by internal services and presented on every channel to a peer, and
    # the CA bundle that peers' certificates must chain to. Re-read when they change.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    # Mesh identities that may call this service, comma-separated; empty: its defaults.
    allowed_peers: str = ""
    # Where mTLS is off: a secret shared by the mesh, sent and checked on every call.
    mesh_token_file: str = pydantic.Field(default="", validation_alias=shared("MESH_TOKEN_FILE"))
    mesh_token: pydantic.SecretStr = pydantic.Field(
        default=pydantic.SecretStr(""), validation_alias=shared("MESH_TOKEN")
    )
    # Accept calls from anyone when neither mTLS nor a token is configured (development).
    insecure_peers: bool = pydantic.Field(default=False, validation_alias=shared("INSECURE_PEERS"))
    # A plain-text listener serving grpc.health.v1 only, for probes (0: none).
    health_port: int = pydantic.Field(default=0, ge=0, le=65535)
    # gRPC server reflection (grpc.reflection.v1 and v1alpha).
    reflection: bool = False

    @property
    def listen_address(self) -> str:
        return f"{self.listen_host}:{self.port}"
