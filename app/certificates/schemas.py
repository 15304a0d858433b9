"""Response shapes, for the OpenAPI document. Answers are written as canonical JSON by the router (the
bytes are what is signed and compared), so these models describe them rather than produce them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class PublicKeyOut(BaseModel):
    kid: str = Field(description="First 16 hex characters of sha256 of the raw public key.")
    alg: Literal["Ed25519"]
    public_key: str = Field(description="The raw 32-byte public key, base64url without padding.")
    public_key_pem: str = Field(description="The same key as PEM (SubjectPublicKeyInfo).")


class KeysOut(BaseModel):
    keys: list[PublicKeyOut]


class VersionRef(BaseModel):
    number: int
    sha256: str


class AuditAnchor(BaseModel):
    seq: int
    hash: str


class CertificateOut(BaseModel):
    type: Literal["unlearnd.deletion-certificate"]
    version: int
    claim: str = Field(description="One human-readable line; the fields beside it are the evidence.")
    forget_request_id: str
    request_id: str
    regulation: str
    subject_ref: str | None = Field(description="Keyed HMAC of the subject; never the raw identifier.")
    scope: dict[str, Any] = Field(description="type, count and sha256 of the sorted scope; no raw IDs.")
    model: dict[str, Any]
    job_id: str
    source_version: VersionRef
    result_version: VersionRef
    method: str
    params: dict[str, Any]
    code_version: dict[str, Any]
    verification: dict[str, Any] | None = Field(description="The job's verification metrics.")
    times: dict[str, str | None]
    audit_anchor: AuditAnchor = Field(description="The audit event recording the success; check it with the chain.")
    chain_head: dict[str, Any] | None = Field(
        None,
        description="seq, hash and signed_at of the signed chain head (GET /v1/audit/heads) that covers the anchor; "
        "certificates before version 3 have none.",
    )


class SignatureOut(BaseModel):
    alg: Literal["Ed25519"]
    kid: str
    value: str = Field(description="base64url Ed25519 signature over the certificate's canonical JSON (UTF-8).")


class SignedCertificateOut(BaseModel):
    certificate: CertificateOut
    signature: SignatureOut
