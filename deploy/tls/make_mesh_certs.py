"""Makes a private CA and one certificate per mesh service, laid out like Kubernetes TLS Secrets.

    python deploy/tls/make_mesh_certs.py OUT_DIR [--namespace llmmesh] [--days 90]

writes OUT_DIR/<service>/tls.crt, tls.key and ca.crt for router, ratelimiter, cache and
provider: the keys (`tls.crt`, `tls.key`, `ca.crt`) that cert-manager writes into a Secret
of type kubernetes.io/tls, so compose mounts a directory where Kubernetes mounts a Secret.
Each certificate names its service twice: as the URI SAN `spiffe://llmmesh/<service>` that
peers match against their allow-lists, and as DNS SANs (the service name, plus the cluster
names with --namespace) that TLS clients verify the address they dialled against.

The CA's private key never touches the disk: it signs the four certificates and is gone, so
the files hold nothing that could mint another identity. A run keeps the existing files when
every certificate is intact and valid for longer than --renew-within-days; otherwise it makes
a new CA and all four certificates, each file replaced atomically. docker compose runs this
as a one-shot step before the services start.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import sys
import tempfile

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICES = ("router", "ratelimiter", "cache", "provider")
TRUST_DOMAIN = "llmmesh"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
DEFAULT_DAYS = 90
DEFAULT_RENEW_WITHIN_DAYS = 30
# Clocks of the containers that check these certificates may lag the one that made them.
BACKDATE = datetime.timedelta(minutes=5)


def spiffe_id(service: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/{service}"


def dns_names(service: str, namespace: str | None) -> list[str]:
    names = [service]
    if namespace:
        names += [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
    return names


@dataclasses.dataclass(frozen=True)
class Issued:
    """One service's certificate, its private key and the CA certificate, as PEM."""

    certificate: bytes
    private_key: bytes
    ca_certificate: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TRUST_DOMAIN),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    """Only the usages asked for; ECDSA keys sign, they neither encipher nor agree keys here."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    now: datetime.datetime, days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = _name(f"{TRUST_DOMAIN} mesh CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        # It signs leaf certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def issue(
    service: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    now: datetime.datetime,
    days: int,
    namespace: str | None,
) -> Issued:
    """A certificate for `service` that serves and calls: server and client auth in one."""
    key = _new_key()
    alternative_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(service))]
    alternative_names += [x509.DNSName(name) for name in dns_names(service, namespace)]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(service))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(
        certificate=certificate.public_bytes(serialization.Encoding.PEM),
        private_key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ca_certificate=ca.public_bytes(serialization.Encoding.PEM),
    )


def still_good(
    directory: pathlib.Path, service: str, namespace: str | None, renew_after: datetime.datetime
) -> bool:
    """Whether the service's files exist, belong together, carry the names asked for now and
    outlast `renew_after`."""
    try:
        certificate = x509.load_pem_x509_certificate((directory / CERT_FILE).read_bytes())
        ca = x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes())
        key = serialization.load_pem_private_key((directory / KEY_FILE).read_bytes(), None)
        certificate.verify_directly_issued_by(ca)
        alternative_names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    uris = alternative_names.get_values_for_type(x509.UniformResourceIdentifier)
    names = alternative_names.get_values_for_type(x509.DNSName)
    return (
        uris == [spiffe_id(service)]
        and names == dns_names(service, namespace)
        and key.public_key() == certificate.public_key()
        and min(certificate.not_valid_after_utc, ca.not_valid_after_utc) > renew_after
    )


def _write_atomically(path: pathlib.Path, content: bytes, mode: int) -> None:
    # A service watching the file sees the old or the new content, never half of one.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def write(directory: pathlib.Path, issued: Issued) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # The CA first and the key before its certificate: a reader that checks that the key
    # matches the certificate rejects the pair until both are new, and keeps the old one.
    _write_atomically(directory / CA_FILE, issued.ca_certificate, 0o444)
    _write_atomically(directory / KEY_FILE, issued.private_key, 0o400)
    _write_atomically(directory / CERT_FILE, issued.certificate, 0o444)


def make_mesh_certs(
    out: pathlib.Path,
    *,
    namespace: str | None = None,
    days: int = DEFAULT_DAYS,
    renew_within_days: int = DEFAULT_RENEW_WITHIN_DAYS,
    now: datetime.datetime | None = None,
) -> bool:
    """Writes fresh certificates unless the present ones are all still good; True if it wrote."""
    if renew_within_days >= days:
        raise ValueError("--renew-within-days must be shorter than --days")
    now = now or datetime.datetime.now(datetime.UTC)
    renew_after = now + datetime.timedelta(days=renew_within_days)
    if all(still_good(out / s, s, namespace, renew_after) for s in SERVICES):
        return False
    ca, ca_key = make_ca(now, days)
    for service in SERVICES:
        issued = issue(service, ca, ca_key, now=now, days=days, namespace=namespace)
        write(out / service, issued)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=pathlib.Path, help="directory that gets one folder per service")
    parser.add_argument("--namespace", help="Kubernetes namespace: adds <service>.<ns>.svc names")
    parser.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help="validity of new certificates"
    )
    parser.add_argument(
        "--renew-within-days",
        type=int,
        default=DEFAULT_RENEW_WITHIN_DAYS,
        help="replace certificates that expire within this many days",
    )
    arguments = parser.parse_args(argv)
    try:
        wrote = make_mesh_certs(
            arguments.out,
            namespace=arguments.namespace,
            days=arguments.days,
            renew_within_days=arguments.renew_within_days,
        )
    except (OSError, ValueError) as error:
        print(f"make_mesh_certs: {error}", file=sys.stderr)
        return 1
    print(f"{'wrote new' if wrote else 'kept the'} mesh certificates in {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
