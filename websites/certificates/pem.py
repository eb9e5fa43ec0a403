"""Keys and certificates as PEM text: make a key, read a chain, check a key against it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID
from django.core.exceptions import ValidationError

MAX_PEM = 64 * 1024


def new_key(key_type: str) -> str:
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_key(text: str):
    try:
        key = serialization.load_pem_private_key(text.strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            "The private key is not an unencrypted PEM key (RSA or ECDSA)."
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValidationError("Only RSA and ECDSA private keys are supported.")
    return key


def key_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass(frozen=True)
class Chain:
    leaf: x509.Certificate
    pem: str  # the leaf, then the rest of the chain, normalised

    @property
    def not_before(self) -> dt.datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    @property
    def fingerprint(self) -> str:
        return self.leaf.fingerprint(hashes.SHA256()).hex()

    @property
    def names(self) -> list[str]:
        try:
            ext = self.leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        except x509.ExtensionNotFound:
            return []
        return ext.value.get_values_for_type(x509.DNSName)


def load_chain(text: str) -> Chain:
    if len(text) > MAX_PEM:
        raise ValidationError("The certificate chain is too long.")
    try:
        certs = x509.load_pem_x509_certificates(text.strip().encode())
    except ValueError as exc:
        raise ValidationError("The certificate is not PEM text (BEGIN CERTIFICATE).") from exc
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
    return Chain(certs[0], pem)


def same_public_key(key, cert: x509.Certificate) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def covers(names: list[str], name: str) -> bool:
    """Does a certificate for ``names`` (wildcards allowed) cover ``name``?"""
    for n in names:
        n = n.lower()
        if n == name or (n.startswith("*.") and name.split(".", 1)[-1] == n[2:]):
            return True
    return False


def check_upload(key_text: str, chain_text: str, site_names: list[str]) -> tuple[str, Chain]:
    """The key (normalised PEM) and chain of an upload, or a ValidationError saying why not."""
    key = load_key(key_text)
    chain = load_chain(chain_text)
    if not same_public_key(key, chain.leaf):
        raise ValidationError(
            {"private_key": "The private key does not belong to the certificate."}
        )
    now = dt.datetime.now(dt.UTC)
    if chain.not_after <= now:
        raise ValidationError(
            {"certificate": f"The certificate expired on {chain.not_after:%Y-%m-%d %H:%M} UTC."}
        )
    if chain.not_before > now:
        raise ValidationError(
            {"certificate": f"The certificate is valid only from {chain.not_before:%Y-%m-%d}."}
        )
    if site_names and not covers(chain.names, site_names[0]):
        raise ValidationError({"certificate": f"The certificate does not cover {site_names[0]}."})
    return key_pem(key), chain
