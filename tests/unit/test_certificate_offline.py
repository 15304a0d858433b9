"""Offline certificate verification: a certificate signed with a fresh key verifies, and every kind of
tampering or mismatch is refused with a reason. Also: the verifier imports no service code, and the
signing key file is created once, private, and reused."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.certificates.offline import (
    b64url_encode,
    key_id,
    raw_public_bytes,
    signing_input,
    verify_certificate,
    verify_file,
)

ROOT = Path(__file__).resolve().parents[2]

CERTIFICATE = {
    "type": "unlearnd.deletion-certificate",
    "version": 1,
    "forget_request_id": "0190c3c4-0000-7000-8000-000000000001",
    "request_id": "dsr-2024-0042",
    "regulation": "gdpr",
    "subject_ref": "a" * 64,
    "scope": {"type": "sample_ids", "count": 30, "sha256": "b" * 64},
    "model": {"id": "0190c3c4-0000-7000-8000-000000000002", "name": "digits-cnn"},
    "source_version": {"number": 1, "sha256": "c" * 64},
    "result_version": {"number": 2, "sha256": "d" * 64},
    "method": "retrain",
    "params": {"epochs": 8},
    "verification": {"forget_accuracy": 0.0333, "test_accuracy": 0.961, "note": "naïve ✓"},
    "times": {"received_at": "2024-07-01T10:00:00+00:00", "finished_at": "2024-07-01T10:00:09.5+00:00"},
    "audit_anchor": {"seq": 17, "hash": "e" * 64},
}


def _sign(certificate: dict, key: Ed25519PrivateKey, kid: str | None = None) -> dict:
    raw = raw_public_bytes(key.public_key())
    return {
        "certificate": certificate,
        "signature": {
            "alg": "Ed25519",
            "kid": kid or key_id(raw),
            "value": b64url_encode(key.sign(signing_input(certificate))),
        },
    }


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def public_b64(key) -> str:
    return b64url_encode(raw_public_bytes(key.public_key()))


def test_a_signed_certificate_verifies_with_every_key_spelling(key, public_b64):
    doc = _sign(copy.deepcopy(CERTIFICATE), key)
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    for spelling in (public_b64, raw_public_bytes(key.public_key()), pem, pem.decode()):
        result = verify_certificate(doc, spelling)
        assert result.ok, result.reason
        assert doc["signature"]["kid"] in result.reason
    # a JSON round trip (what an auditor's file goes through) keeps it valid: keys re-sorted, floats exact
    assert verify_certificate(json.loads(json.dumps(doc, indent=2)), public_b64).ok


def _assert_refused(doc: dict, public_key, why: str) -> None:
    result = verify_certificate(doc, public_key)
    assert result.ok is False
    assert why in result.reason, result.reason


def test_a_changed_field_fails(key, public_b64):
    doc = _sign(copy.deepcopy(CERTIFICATE), key)
    doc["certificate"]["result_version"]["sha256"] = "f" * 64
    _assert_refused(doc, public_b64, "does not match the certificate")
    doc = _sign(copy.deepcopy(CERTIFICATE), key)
    doc["certificate"]["verification"]["forget_accuracy"] = 0.0334
    _assert_refused(doc, public_b64, "does not match the certificate")
    doc = _sign(copy.deepcopy(CERTIFICATE), key)
    doc["certificate"]["extra"] = None  # an added field changes the signed bytes too
    _assert_refused(doc, public_b64, "does not match the certificate")


def test_a_signature_from_another_key_fails(key, public_b64):
    other = Ed25519PrivateKey.generate()
    # signed by another key but claiming this key's id: the kid matches, the signature does not
    doc = _sign(copy.deepcopy(CERTIFICATE), other, kid=key_id(raw_public_bytes(key.public_key())))
    _assert_refused(doc, public_b64, "does not match the certificate")
    # honestly labelled with the other key's id: refused before the signature is even checked
    _assert_refused(_sign(copy.deepcopy(CERTIFICATE), other), public_b64, "is not the given public key's")


def test_a_wrong_kid_fails(key, public_b64):
    doc = _sign(copy.deepcopy(CERTIFICATE), key, kid="0123456789abcdef")
    _assert_refused(doc, public_b64, "key id '0123456789abcdef'")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("not base64!", "malformed signature value"),
        ("AAAA", "3 bytes, an Ed25519 signature is 64"),
        (None, "0 bytes"),
        ("A" * 86 + "==", "malformed signature value"),  # padded: not the canonical spelling
    ],
)
def test_a_malformed_signature_fails(key, public_b64, value, why):
    doc = _sign(copy.deepcopy(CERTIFICATE), key)
    doc["signature"]["value"] = value
    _assert_refused(doc, public_b64, why)


def test_malformed_documents_and_keys_fail(key, public_b64):
    good = _sign(copy.deepcopy(CERTIFICATE), key)
    _assert_refused({"certificate": CERTIFICATE}, public_b64, "malformed document")
    _assert_refused({**good, "signature": {**good["signature"], "alg": "RS256"}}, public_b64, "'RS256'")
    other_type = _sign({**CERTIFICATE, "type": "something-else"}, key)
    _assert_refused(other_type, public_b64, "not a deletion certificate")
    _assert_refused(good, public_b64[:-4], "unusable public key")
    _assert_refused(good, "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", "unusable public key")


def test_verify_file_reads_a_certificate_and_a_key_file_or_string(tmp_path, key, public_b64):
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(_sign(copy.deepcopy(CERTIFICATE), key)), encoding="utf-8")
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    assert verify_file(str(cert), str(pem)).ok
    assert verify_file(str(cert), public_b64).ok
    missing = verify_file(str(tmp_path / "nope.json"), public_b64)
    assert missing.ok is False and "unreadable certificate file" in missing.reason


OFFLINE_CERTIFICATES = {"app.certificates", "app.certificates.offline", "app.core", "app.core.hashing"}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("app.certificates.offline", OFFLINE_CERTIFICATES),
        ("app.audit.offline", OFFLINE_CERTIFICATES | {"app.audit", "app.audit.offline", "app.audit.hashchain"}),
    ],
)
def test_the_offline_verifiers_import_no_service_code(module, allowed):
    code = f"import {module}, sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    forbidden = {m for m in loaded if m.split(".")[0] in {"fastapi", "starlette", "sqlalchemy", "psycopg", "celery"}}
    assert not forbidden, forbidden
    assert {m for m in loaded if m.startswith("app.")} == allowed


def test_the_signing_key_is_generated_once_private_and_reused(tmp_path, monkeypatch):
    from app.certificates import keys
    from app.settings import get_settings

    path = tmp_path / "nested" / "signing-key.pem"
    monkeypatch.setenv("UNLEARND_SIGNING_KEY_FILE", str(path))
    get_settings.cache_clear()
    keys.signing_key.cache_clear()
    try:
        first = keys.signing_key()
        assert path.is_file() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert b"BEGIN PRIVATE KEY" in path.read_bytes()
        assert [p.name for p in path.parent.iterdir()] == ["signing-key.pem"]  # the temporary file is gone
        keys.signing_key.cache_clear()
        again = keys.signing_key()  # a new process: reads the file, does not generate
        assert again.kid == first.kid and len(first.kid) == 16
        described = again.public_description()
        assert described["alg"] == "Ed25519" and described["kid"] == first.kid
        doc = {"certificate": CERTIFICATE, "signature": {"alg": "Ed25519", "kid": first.kid}}
        doc["signature"]["value"] = b64url_encode(first.sign(signing_input(CERTIFICATE)))
        assert verify_certificate(doc, described["public_key"]).ok
        assert verify_certificate(doc, described["public_key_pem"]).ok
    finally:
        get_settings.cache_clear()
        keys.signing_key.cache_clear()
