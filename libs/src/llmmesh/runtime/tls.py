"""TLS credentials from certificate files, for serving and for channels to peers.

The files are watched (`llmmesh.runtime.watched_files`): a server hands gRPC the new
certificate configuration at the first handshake after the files changed, and channels to
peers are renewed with the new client certificate (`llmmesh.runtime.renewing_channel`), so
a rotation needs no restart. Connections already open keep the certificates they were
made with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import structlog

from llmmesh.runtime.watched_files import WatchedFiles

log = structlog.get_logger(__name__)


class TlsConfigError(ValueError):
    """Certificate files that cannot be used; the message names the files."""


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """Paths of a certificate chain, its private key and a CA bundle; "" where not given."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""

    @property
    def has_identity(self) -> bool:
        """A certificate to present: a server's, or a client's for mTLS."""
        return bool(self.cert_file and self.key_file)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for path in (self.cert_file, self.key_file, self.ca_file) if path)


@dataclasses.dataclass(frozen=True)
class CertificateSet:
    """The PEM contents of a TlsFiles, checked to belong together."""

    certificate_chain: bytes | None
    private_key: bytes | None
    root_certificates: bytes | None


def read_certificates(files: TlsFiles) -> CertificateSet:
    """Reads and checks the files: the key must match the certificate, the CA must parse.

    The check goes through the standard library's ssl module (about 1 MiB when first
    imported) rather than the cryptography package (about 10 MiB).
    """
    if bool(files.cert_file) != bool(files.key_file):
        raise TlsConfigError("a certificate and its key are given together, or neither")
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if files.has_identity:
            context.load_cert_chain(files.cert_file, files.key_file)
        if files.ca_file:
            context.load_verify_locations(cafile=files.ca_file)
        contents = [_read(path) for path in (files.cert_file, files.key_file, files.ca_file)]
    except ssl.SSLError as error:
        raise TlsConfigError(f"{', '.join(files.paths)}: not a usable set: {error}") from None
    except OSError as error:
        raise TlsConfigError(f"cannot read {error.filename}: {error.strerror}") from None
    return CertificateSet(*contents)


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as file:
        return file.read()


_watches: dict[TlsFiles, WatchedFiles[CertificateSet]] = {}


def watch_certificates(files: TlsFiles) -> WatchedFiles[CertificateSet]:
    """One watch per set of files in a process, shared by its server and its channels."""
    watch = _watches.get(files)
    if watch is None:
        try:
            watch = WatchedFiles(
                files.paths, lambda: read_certificates(files), what="tls certificates"
            )
        except OSError as error:
            raise TlsConfigError(f"cannot read {error.filename}: {error.strerror}") from None
        _watches[files] = watch
    return watch


def _server_configuration(certificates: CertificateSet) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(certificates.private_key, certificates.certificate_chain)],
        root_certificates=certificates.root_certificates,
    )


def server_credentials(
    certificates: WatchedFiles[CertificateSet], *, require_client_certificate: bool
) -> grpc.ServerCredentials:
    """Server credentials that take up changed files at the next handshake."""
    served_generation = certificates.generation

    def fetch_configuration() -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC core before each handshake; None keeps the configuration it has.
        nonlocal served_generation
        try:
            generation = certificates.current_generation()
            if generation == served_generation:
                return None
            configuration = _server_configuration(certificates.value)
        except Exception:  # a failure here would fail the handshake; keep serving instead
            log.exception("tls_configuration_failed")
            return None
        served_generation = generation
        return configuration

    return grpc.dynamic_ssl_server_credentials(
        _server_configuration(certificates.value),
        fetch_configuration,
        require_client_authentication=require_client_certificate,
    )


def redis_tls_options(url: str, ca_file: str) -> dict[str, Any]:
    """redis-py options for a `rediss://` URL whose server certificate chains to `ca_file`
    (LLMMESH_REDIS_CA_FILE); without it the system's CA bundle applies. Anything else
    redis-py reads from the URL's query (`ssl_certfile`, `ssl_keyfile` for client
    certificates, `ssl_cert_reqs`) works as usual."""
    if ca_file and url.startswith("rediss://"):
        return {"ssl_ca_certs": ca_file}
    return {}


def channel_credentials(certificates: CertificateSet) -> grpc.ChannelCredentials:
    """Verifies the server against the CA bundle (the system's when none is given) and
    presents this service's certificate where it has one."""
    return grpc.ssl_channel_credentials(
        root_certificates=certificates.root_certificates,
        private_key=certificates.private_key,
        certificate_chain=certificates.certificate_chain,
    )
