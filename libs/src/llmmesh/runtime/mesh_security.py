"""How a service proves itself to its peers and checks its callers, from its settings.

- mTLS (`LLMMESH_<SERVICE>_TLS_CERT_FILE`, `_KEY_FILE`, `_CA_FILE`): internal services
  require a client certificate from the CA and check its identity against the RPC's
  allow-list; every channel to a peer presents the certificate and verifies the peer's.
- A mesh token (`LLMMESH_MESH_TOKEN_FILE` or `LLMMESH_MESH_TOKEN`): sent with every call to
  a peer and required on every call to an internal service. With mTLS too, both are needed.
- Neither: the service refuses to start, unless `LLMMESH_INSECURE_PEERS=true` says that
  plain text and callers without credentials are wanted (development only; logged).

The router's own port is the mesh's front door and is configured apart (`public_serving`):
its callers are tenants with API keys, not mesh peers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import structlog

from llmmesh.runtime.listeners import ServingTransport
from llmmesh.runtime.mesh_token import MeshToken, TokenConfigError
from llmmesh.runtime.peer_access import PeerAccessInterceptor
from llmmesh.runtime.peer_identity import CallerRules, split_identities
from llmmesh.runtime.settings import ServiceSettings
from llmmesh.runtime.tls import (
    CertificateSet,
    TlsConfigError,
    TlsFiles,
    server_credentials,
    watch_certificates,
)
from llmmesh.runtime.watched_files import WatchedFiles

log = structlog.get_logger(__name__)


class MeshSecurityError(ValueError):
    """Mesh credentials that cannot be used, or none where some are needed; one line."""


def _prefix(settings: ServiceSettings) -> str:
    return str(settings.model_config.get("env_prefix", "LLMMESH_")).upper()


@dataclasses.dataclass(frozen=True)
class MeshCredentials:
    """This service's mesh identity (certificates) and the mesh token, each if configured."""

    tls_files: TlsFiles = dataclasses.field(default_factory=TlsFiles)
    certificates: WatchedFiles[CertificateSet] | None = None
    token: MeshToken | None = None

    @property
    def mutual_tls(self) -> bool:
        return self.tls_files.has_identity and bool(self.tls_files.ca_file)

    @property
    def configured(self) -> bool:
        return self.mutual_tls or self.token is not None

    def describe(self) -> str:
        parts = ["mTLS" if self.mutual_tls else "TLS" if self.certificates else "plaintext"]
        if self.token is not None:
            parts.append("mesh token")
        return " + ".join(parts)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> MeshCredentials:
        """Reads and checks the files the settings name; raises MeshSecurityError."""
        prefix = _prefix(settings)
        files = TlsFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)
        certificates = None
        if files.paths:
            try:
                certificates = watch_certificates(files)
            except TlsConfigError as error:
                raise MeshSecurityError(f"{prefix}TLS_*: {error}") from None
        token = None
        try:
            if settings.mesh_token_file:
                token = MeshToken.from_file(settings.mesh_token_file)
            elif settings.mesh_token.get_secret_value():
                token = MeshToken.from_value(settings.mesh_token.get_secret_value())
        except (TokenConfigError, OSError) as error:
            source = "LLMMESH_MESH_TOKEN_FILE" if settings.mesh_token_file else "LLMMESH_MESH_TOKEN"
            detail = error.strerror if isinstance(error, OSError) else error
            raise MeshSecurityError(f"{source}: {detail}") from None
        return cls(files, certificates, token)

    def require(self, settings: ServiceSettings) -> None:
        """The start rule: mesh credentials, or an explicit opt-out of them."""
        if self.configured:
            return
        if settings.insecure_peers:
            log.warning(
                "insecure_peers",
                detail="no mTLS and no mesh token: plain text, and any caller is accepted",
            )
            return
        prefix = _prefix(settings)
        raise MeshSecurityError(
            f"no mesh credentials: set {prefix}TLS_CERT_FILE, {prefix}TLS_KEY_FILE and "
            f"{prefix}TLS_CA_FILE (mTLS), or LLMMESH_MESH_TOKEN_FILE, or "
            "LLMMESH_INSECURE_PEERS=true to accept any caller in plain text"
        )


Serving = Callable[[ServiceSettings, MeshCredentials], ServingTransport]


def mesh_serving(callers: CallerRules) -> Serving:
    """An internal service's port: mTLS and its callers' rules, the token, or neither."""

    def serving(settings: ServiceSettings, credentials: MeshCredentials) -> ServingTransport:
        override = split_identities(settings.allowed_peers)
        rules = CallerRules(override) if override else callers
        if credentials.tls_files.ca_file and not credentials.tls_files.has_identity:
            prefix = _prefix(settings)
            raise MeshSecurityError(
                f"{prefix}TLS_CA_FILE is set but a service that serves TLS also needs "
                f"{prefix}TLS_CERT_FILE and {prefix}TLS_KEY_FILE"
            )
        tls = None
        if credentials.certificates is not None:
            tls = server_credentials(
                credentials.certificates, require_client_certificate=credentials.mutual_tls
            )
        if not credentials.configured:
            return ServingTransport(tls, (), f"{credentials.describe()}, any caller")
        access = PeerAccessInterceptor(
            rules, token=credentials.token, check_certificates=credentials.mutual_tls
        )
        who = f"; callers: {rules.describe()}" if credentials.mutual_tls else ""
        return ServingTransport(tls, (access,), f"{credentials.describe()}{who}")

    return serving


def public_serving(files: TlsFiles, *, variables: str) -> ServingTransport:
    """A client-facing port: plain text, TLS with a certificate and key, and client
    certificates required when a client CA is given too (mTLS for backends)."""
    if not files.paths:
        return ServingTransport(description="plaintext")
    if not files.has_identity:
        raise MeshSecurityError(f"{variables}: a client CA needs a certificate and key too")
    try:
        certificates = watch_certificates(files)
    except TlsConfigError as error:
        raise MeshSecurityError(f"{variables}: {error}") from None
    require = bool(files.ca_file)
    credentials = server_credentials(certificates, require_client_certificate=require)
    return ServingTransport(credentials, (), "mTLS (client certificates)" if require else "TLS")
