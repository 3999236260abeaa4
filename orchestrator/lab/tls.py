"""TLS for the lab's HTTPS listeners: a throw-away certificate authority, one server certificate per
host (its 127.0.x.y address and its name as subject alternative names), and the server-side SSL
context a host's Windows would offer.

Windows up to Server 2008 R2 serves TLS 1.0 only by default (Ansible's "Windows Remote Management"
guide, TLS 1.2 Support: 2008 R2 and Windows 7 need TLS 1.2 enabled by hand, 2012 has it). OpenSSL 3
refuses TLS 1.0 at its default security level ("no ciphers available"), so a TLS 1.0 listener runs
at security level 0: the host offers what Windows offers, and a client that still speaks TLS 1.0 can
reach it, while a modern client's default context (TLS 1.2 at least) cannot.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
_VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class CertFiles:
    """PEM files of one server certificate and its key."""

    certfile: Path
    keyfile: Path


class LabCA:
    """A certificate authority that lives in `directory` for as long as a lab fleet runs."""

    def __init__(self, directory: Path, name: str = "dsrprep lab CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._name = subject
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cafile = directory / "ca.pem"
        self.cafile.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, hostname: str, address: str) -> CertFiles:
        """A server certificate for `hostname` at `address`, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(hostname.lower()), x509.IPAddress(ipaddress.ip_address(address))]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        stem = f"{hostname.lower()}-{address}"
        files = CertFiles(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        files.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.keyfile.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
        )
        files.keyfile.chmod(0o600)
        return files


def server_context(certfile: str, keyfile: str, maximum: str = "1.2") -> ssl.SSLContext:
    """The SSL context of a listener whose newest TLS version is `maximum` ("1.0" ... "1.3").

    A TLS 1.0 listener also serves TLS 1.0 only, at OpenSSL security level 0 (see the module's
    docstring); the others accept TLS 1.2 up to `maximum`."""
    if maximum not in _VERSIONS:
        raise ValueError(f"unknown TLS version {maximum!r}; choose one of {', '.join(_VERSIONS)}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    top = _VERSIONS[maximum]
    with warnings.catch_warnings():
        # ssl marks TLSv1/TLSv1_1 deprecated; serving them is the point of a legacy host.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = top
        if top < ssl.TLSVersion.TLSv1_2:
            context.minimum_version = top
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context
