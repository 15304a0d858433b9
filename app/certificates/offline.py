"""Verify a deletion certificate without the service: no web framework, no database.

An auditor needs this module, ``app.core.hashing`` (pure stdlib) and the ``cryptography`` package;
``unlearnd verify-certificate`` is a thin wrapper around :func:`verify_certificate`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from app.core.hashing import canonical_json

ALG = "Ed25519"
CERTIFICATE_TYPE = "unlearnd.deletion-certificate"
_PEM_PREFIX = "-----BEGIN"


GUARANTEES = ("exact", "verified", "unverified")


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    reason: str
    guarantee: str | None = None  # what a valid certificate claims: exact, verified or unverified


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, no padding, and exactly one spelling per byte string
    (so a signature cannot be re-spelled into a different document that still verifies)."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None
    if b64url_encode(data) != text:
        raise ValueError("not canonical unpadded base64url")
    return data


def key_id(public_raw: bytes) -> str:
    """Derived from the key itself, so a verifier needs no registry to match a key to a certificate
    and keys can rotate without coordination."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def signing_input(certificate: dict[str, Any]) -> bytes:
    return canonical_json(certificate).encode("utf-8")


def load_public_key(public_key: str | bytes) -> Ed25519PublicKey:
    """PEM (SubjectPublicKeyInfo), base64url of the raw 32 bytes, or the raw 32 bytes."""
    if isinstance(public_key, bytes):
        if len(public_key) == 32 and not public_key.startswith(_PEM_PREFIX.encode()):
            return Ed25519PublicKey.from_public_bytes(public_key)
        try:
            public_key = public_key.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("neither PEM, base64url text nor 32 raw bytes") from None
    text = public_key.strip()
    if text.startswith(_PEM_PREFIX):
        try:
            key = load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"unreadable PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"the PEM holds a {type(key).__name__}, not an Ed25519 public key")
        return key
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def verify_certificate(document: dict[str, Any], public_key: str | bytes) -> VerificationResult:
    """``document`` is the whole answer of ``GET /v1/forget-requests/{id}/certificate``."""
    certificate = document.get("certificate") if isinstance(document, dict) else None
    signature = document.get("signature") if isinstance(document, dict) else None
    if not isinstance(certificate, dict) or not isinstance(signature, dict):
        return VerificationResult(False, "malformed document: expected 'certificate' and 'signature' objects")
    if certificate.get("type") != CERTIFICATE_TYPE:
        return VerificationResult(False, f"not a deletion certificate (type {certificate.get('type')!r})")
    try:
        kid = check_signature(certificate, signature, public_key, what="certificate")
    except ValueError as exc:
        return VerificationResult(False, str(exc))
    guarantee = certificate.get("guarantee", "unverified")  # version 1 certificates predate the gate
    if guarantee not in GUARANTEES:
        return VerificationResult(False, f"unknown guarantee {guarantee!r}")
    return VerificationResult(True, f"signed by key {kid}; guarantee: {describe(certificate)}", guarantee)


def check_signature(signed: dict[str, Any], signature: dict[str, Any], public_key: Any, *, what: str) -> str:
    """The kid of the key that signed ``signed`` (its canonical JSON) with ``signature``
    (``{alg, kid, value}``); ValueError with the reason otherwise. Certificates and chain heads
    are signed alike. ``public_key``: anything :func:`load_public_key` reads, or a loaded key."""
    if signature.get("alg") != ALG:
        raise ValueError(f"unsupported signature algorithm {signature.get('alg')!r}")
    try:
        key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    except ValueError as exc:
        raise ValueError(f"unusable public key: {exc}") from None
    kid = key_id(raw_public_bytes(key))
    if signature.get("kid") != kid:
        raise ValueError(f"key id {signature.get('kid')!r} is not the given public key's ({kid})")
    value = signature.get("value")
    try:
        sig = b64url_decode(value) if isinstance(value, str) else b""
    except ValueError as exc:
        raise ValueError(f"malformed signature value: {exc}") from None
    if len(sig) != 64:
        raise ValueError(f"malformed signature value: {len(sig)} bytes, an Ed25519 signature is 64")
    try:
        key.verify(sig, signing_input(signed))
    except InvalidSignature:
        raise ValueError(f"signature does not match the {what} (altered, or signed by another key)") from None
    return kid


def describe(certificate: dict[str, Any]) -> str:
    """The guarantee in words, with the tests behind it."""
    guarantee = certificate.get("guarantee", "unverified")
    tests = (certificate.get("verification") or {}).get("tests") or []
    if guarantee == "exact":
        return "exact (retrained from scratch without the data)"
    shown = ", ".join(
        f"{t.get('name')} {t.get('statistic')} vs {t.get('threshold')}: {'pass' if t.get('passed') else 'FAIL'}"
        for t in tests
        if isinstance(t, dict) and t.get("passed") is not None
    )
    return f"{guarantee} ({shown or 'no test ran'})"


def verify_file(certificate_path: str, public_key: str) -> VerificationResult:
    """The CLI's input: a certificate JSON file, and a PEM file or a base64url key string."""
    try:
        document = json.loads(Path(certificate_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return VerificationResult(False, f"unreadable certificate file: {exc}")
    key_path = Path(public_key)
    try:
        key: str | bytes = key_path.read_bytes() if key_path.is_file() else public_key
    except OSError as exc:
        return VerificationResult(False, f"unreadable public key file: {exc}")
    return verify_certificate(document, key)
