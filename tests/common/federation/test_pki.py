"""Offline PKI for a real federation: CA, SuperLink certificate, SuperNode keys."""

import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common.federation.pki import init_ca, node_key, server_cert


def test_server_certificate_is_signed_by_the_ca_for_its_hosts(tmp_path):
    ca_path, ca_key = init_ca(tmp_path / "ca")
    cert_path, key_path = server_cert(
        tmp_path / "ca", tmp_path / "server", ["127.0.0.1", "superlink.example.org"]
    )
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(ca)  # raises when the signature does not match
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["superlink.example.org"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for private in (ca_key, key_path):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        init_ca(tmp_path / "ca")
    with pytest.raises(ValueError, match="at least one host"):
        server_cert(tmp_path / "ca", tmp_path / "other", [])
    with pytest.raises(ValueError, match="no usable ca.crt"):
        server_cert(tmp_path / "nowhere", tmp_path / "other", ["127.0.0.1"])


def test_node_key_is_openssh_ecdsa_p384(tmp_path):
    private, public = node_key(tmp_path / "keys" / "hospital-1")
    assert public.name == "hospital-1.pub"
    key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    pub = serialization.load_ssh_public_key(public.read_bytes())
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert pub.public_numbers() == key.public_key().public_numbers()
    assert public.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        node_key(tmp_path / "keys" / "hospital-1")
