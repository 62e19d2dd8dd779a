"""Optional mutual TLS for p2p sessions, with certificates pinned to validator node keys.

Each node's TLS certificate carries its Ed25519 *node key* (the same key as in the
validator set), so "is this the right peer" is answered by comparing public keys, not
by a CA or a host name.

Why there is a "notary": Python's `ssl` module has no verification callback, and a
server that asks for a client certificate verifies it against its trust store, which
rejects a self-signed leaf it has never seen. So every leaf here is issued by a fixed,
*public* notary key (derived from a published constant — anyone can sign with it, it
certifies nothing). It only makes OpenSSL's chain check pass; the security comes from
two other facts:

* TLS itself proves possession: the peer signs the handshake transcript with the leaf's
  private key (TLS 1.3 CertificateVerify), so it holds the node key in its certificate;
* after the TLS handshake both sides read the peer certificate's public key and require
  it to equal the expected node key (client: the validator it dialled; server: a current
  validator, and the same key that then signs the p2p hello).
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.crypto import Signer
from ledger.encoding import sha256

_NOTARY_SEED = sha256(b"cxl/p2p/tls-notary/v1: public on purpose, certifies nothing")
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)


def _notary() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.from_private_bytes(_NOTARY_SEED)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxl p2p notary (public)")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(key, None)
    )
    return key, cert


def _notary_pem() -> str:
    return _notary()[1].public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """A node's TLS identity: PEM certificate + PEM private key for its *node key*.

    Certificates from `for_signer` are issued by the public notary and accepted by every
    node. Certificates from elsewhere must carry the node key too, and be issued either by
    the notary or by a CA listed in `ca_pem` on every node (extra trust anchors)."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None = None

    @property
    def public_key(self) -> bytes | None:
        """The Ed25519 key the certificate carries (None if it is not Ed25519)."""
        try:
            cert = x509.load_pem_x509_certificate(self.cert_pem)
        except ValueError:
            return None
        return certificate_key(cert.public_bytes(serialization.Encoding.DER))

    def __repr__(self) -> str:  # never print a private key
        return "TLSConfig(<node certificate>)"

    @classmethod
    def for_signer(cls, signer: Signer) -> "TLSConfig":
        """A certificate for `signer`'s node key. Deterministic: same key, same bytes."""
        return cls.for_seed(signer.seed)

    @classmethod
    def for_seed(cls, seed: bytes) -> "TLSConfig":
        key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        notary_key, notary_cert = _notary()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxl-node-" + raw.hex()[:32])]))
            .issuer_name(notary_cert.subject)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(sha256(raw)[:16], "big") >> 1 or 1)
            .not_valid_before(_NOT_BEFORE)
            .not_valid_after(_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(notary_key, None)
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cls(cert.public_bytes(serialization.Encoding.PEM), key_pem)

    def _load_into(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(cadata=_notary_pem())
        if self.ca_pem:
            ctx.load_verify_locations(cadata=self.ca_pem.decode())
        # `ssl` only loads identities from files: write them to a private temp dir, load, delete.
        with tempfile.TemporaryDirectory(prefix="cxl-tls-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key_pem)
            with open(cert_path, "wb") as f:
                f.write(self.cert_pem)
            ctx.load_cert_chain(cert_path, key_path)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.verify_mode = ssl.CERT_REQUIRED  # demand a client certificate; its key is pinned later
        return self._load_into(ctx)

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # identity is the pinned node key, not a host name
        ctx.verify_mode = ssl.CERT_REQUIRED
        return self._load_into(ctx)


def certificate_key(der: bytes | None) -> bytes | None:
    """The raw Ed25519 public key in a DER certificate, or None if absent or not Ed25519."""
    if not der:
        return None
    try:
        public = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None
    if not isinstance(public, Ed25519PublicKey):
        return None
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def peer_certificate_key(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The node key the TLS peer proved it holds, or None (no TLS, no certificate)."""
    if ssl_object is None:
        return None
    return certificate_key(ssl_object.getpeercert(binary_form=True))
