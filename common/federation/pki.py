"""Certificates and keys for a real federation, made offline with ``cryptography``.

- :func:`init_ca` — the consortium's certificate authority (``ca.crt``, ``ca.key``);
- :func:`server_cert` — the SuperLink's TLS certificate for its host names and addresses
  (``server.pem``, ``server.key``), signed by the CA;
- :func:`node_key` — one hospital's SuperNode key pair, OpenSSH ECDSA NIST P-384 (what
  Flower's SuperNode authentication accepts; ed25519 is refused): the private key stays at
  the hospital, the ``.pub`` goes to the coordinator, who registers it.

Private keys are written with mode 0600 and never overwritten.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path}: exists; refusing to overwrite a key or certificate")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "calcifl"),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def init_ca(
    out_dir: str | Path, name: str = "calcifl consortium CA", days: int = 3650
) -> tuple[Path, Path]:
    """Create the consortium CA; return (certificate, private key) paths."""
    out = Path(out_dir)
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    subject = _name(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_path = _write(
        out / "ca.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    cert_path = _write(out / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _load_ca(ca_dir: Path):
    try:
        cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{ca_dir}: no usable ca.crt/ca.key ({exc})") from exc
    return cert, key


def server_cert(
    ca_dir: str | Path, out_dir: str | Path, hosts: list[str], days: int = 825
) -> tuple[Path, Path]:
    """Create the SuperLink's certificate for ``hosts`` (names or IP addresses).

    Returns
    -------
    (certificate, private key) paths: ``server.pem`` and ``server.key``.
    """
    if not hosts:
        raise ValueError("name at least one host (e.g. 127.0.0.1 or the SuperLink's DNS name)")
    ca_cert, ca_key = _load_ca(Path(ca_dir))
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = Path(out_dir)
    key_path = _write(
        out / "server.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    cert_path = _write(out / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def node_key(path: str | Path) -> tuple[Path, Path]:
    """Create a SuperNode key pair: ``path`` (private, OpenSSH) and ``path.pub``."""
    path = Path(path)
    key = ec.generate_private_key(ec.SECP384R1())
    private = _write(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    public = _write(
        path.with_name(path.name + ".pub"),
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n",
    )
    return private, public
