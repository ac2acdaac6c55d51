"""A small PKI for the broker's TLS: a CA, the broker's certificate, and client certificates."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
BROKER_CERT = "broker.crt"
BROKER_KEY = "broker.key"


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CareHub"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(*, now: datetime, common_name: str = "CareHub broker CA") -> Issued:
    """A self-signed CA that signs only the broker's and clients' certificates."""
    key = _key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _leaf(
    ca: Issued,
    common_name: str,
    *,
    now: datetime,
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName] | None = None,
) -> Issued:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def create_broker_cert(
    ca: Issued, *, now: datetime, hostnames: list[str], ips: list[str] | None = None
) -> Issued:
    """The broker's server certificate; its SAN lists the names and addresses clients dial."""
    addresses = ips if ips is not None else ["127.0.0.1"]
    san: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    san += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    common_name = hostnames[0] if hostnames else addresses[0]
    return _leaf(ca, common_name, now=now, usage=ExtendedKeyUsageOID.SERVER_AUTH, san=san)


def create_client_cert(ca: Issued, common_name: str, *, now: datetime) -> Issued:
    """A client certificate (e.g. a device or the hub) for ``require_certificate true``."""
    return _leaf(ca, common_name, now=now, usage=ExtendedKeyUsageOID.CLIENT_AUTH)


def _write(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


def write_issued(issued: Issued, directory: Path, stem: str) -> tuple[Path, Path]:
    """``<stem>.crt`` (0644) and ``<stem>.key`` (0600) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    _write(cert, issued.cert_pem(), 0o644)
    _write(key, issued.key_pem(), 0o600)
    return cert, key


def load_ca(directory: Path) -> Issued:
    """The CA written earlier to ``directory`` (to issue more client certificates)."""
    cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / CA_KEY} is not an EC private key")
    return Issued(cert, key)


def render_tls_listener(
    port: int,
    *,
    cafile: Path,
    certfile: Path,
    keyfile: Path,
    bind: str | None = None,
    require_certificate: bool = False,
) -> str:
    """Mosquitto config lines for an MQTT-over-TLS listener (docs/broker-tls.md)."""
    lines = [
        f"listener {port}" + (f" {bind}" if bind else ""),
        f"cafile {cafile.resolve()}",
        f"certfile {certfile.resolve()}",
        f"keyfile {keyfile.resolve()}",
        "tls_version tlsv1.2",
        f"require_certificate {'true' if require_certificate else 'false'}",
    ]
    return "\n".join(lines) + "\n"
