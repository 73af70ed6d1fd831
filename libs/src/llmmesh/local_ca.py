"""A throw-away certificate authority for a local mesh: one CA, one certificate per service.

`llmmesh up` and the tests make one in a temporary folder so that the services talk mTLS
with real certificates. The CA's private key stays in memory and is gone with the process;
each service gets a certificate whose URI SAN is its mesh identity
(`spiffe://llmmesh/<service>`), valid for the loopback addresses and its own name as a
host. For production, certificates come from the operator's CA (cert-manager, Vault, ...).

`python -m llmmesh.local_ca DIR [--host NAME ...]` writes `ca.crt` and `<service>.crt` /
`<service>.key` for the four services, for a one-shot step in a Compose file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import os
import pathlib
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from llmmesh.runtime.peer_identity import spiffe_id

MESH_SERVICES = ("router", "ratelimiter", "cache", "provider")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_VALID_DAYS = 30
# Clocks of processes on one machine agree, but containers' may lag by a little.
BACKDATE = datetime.timedelta(minutes=5)


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
    key_encipherment=False, data_encipherment=False, key_agreement=False,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class IssuedCertificate:
    """Files of one certificate: what LLMMESH_<SERVICE>_TLS_* point at."""

    cert_file: pathlib.Path
    key_file: pathlib.Path
    ca_file: pathlib.Path

    def environment(self, prefix: str) -> dict[str, str]:
        """`{prefix}TLS_CERT_FILE` and friends, for a service's environment."""
        return {
            f"{prefix}TLS_CERT_FILE": str(self.cert_file),
            f"{prefix}TLS_KEY_FILE": str(self.key_file),
            f"{prefix}TLS_CA_FILE": str(self.ca_file),
        }


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: pathlib.Path, content: bytes) -> None:
    """Written readable by its owner only, as key files must be."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)


def _host_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


class LocalCertificateAuthority:
    """A CA (ECDSA P-256) that writes the certificates it issues into `directory`."""

    def __init__(
        self,
        directory: pathlib.Path,
        *,
        name: str = "llmmesh local CA",
        valid_days: int = DEFAULT_VALID_DAYS,
    ) -> None:
        self.directory = directory
        self._valid_days = valid_days
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._certificate = (
            self._builder(subject, self._key.public_key(), subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .sign(self._key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "ca.crt"
        self.ca_file.write_bytes(self.certificate_pem)

    @property
    def certificate_pem(self) -> bytes:
        return self._certificate.public_bytes(serialization.Encoding.PEM)

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey, issuer: x509.Name
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=self._valid_days))
        )

    def issue(
        self,
        name: str,
        *,
        identity: str | None = None,
        hosts: Sequence[str] = LOOPBACK_HOSTS,
        file_stem: str | None = None,
    ) -> IssuedCertificate:
        """A certificate with common name `name` and URI SAN `identity` (by default the
        mesh identity `spiffe://llmmesh/<name>`; "" for none), for servers and clients."""
        key = ec.generate_private_key(ec.SECP256R1())
        uri = spiffe_id(name) if identity is None else identity
        alternative_names = _host_names([*hosts, name])
        if uri:
            alternative_names.append(x509.UniformResourceIdentifier(uri))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            self._builder(subject, key.public_key(), self._certificate.subject)
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        stem = file_stem or name
        issued = IssuedCertificate(
            self.directory / f"{stem}.crt", self.directory / f"{stem}.key", self.ca_file
        )
        issued.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_private(issued.key_file, _private_key_pem(key))
        return issued


def mesh_certificates(
    authority: LocalCertificateAuthority, hosts: Sequence[str] = LOOPBACK_HOSTS
) -> dict[str, IssuedCertificate]:
    """One certificate per service of the mesh."""
    return {service: authority.issue(service, hosts=hosts) for service in MESH_SERVICES}


def main(arguments: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmmesh.local_ca", description=__doc__)
    parser.add_argument("directory", type=pathlib.Path)
    parser.add_argument(
        "--host", action="append", default=[],
        help="an extra DNS name or address every certificate is valid for (repeatable); "
        "each service's own name always is",
    )  # fmt: skip
    parser.add_argument("--valid-days", type=int, default=DEFAULT_VALID_DAYS)
    parsed = parser.parse_args(arguments)
    authority = LocalCertificateAuthority(parsed.directory, valid_days=parsed.valid_days)
    mesh_certificates(authority, [*LOOPBACK_HOSTS, *parsed.host])
    print(f"wrote {authority.ca_file} and a certificate and key per service")


if __name__ == "__main__":
    main()
