from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    occurred_at: datetime
    tenant_id: str | None = Field(description="The tenant; null on events from before tenants existed.")
    actor: str
    action: str
    entity_type: str
    entity_id: str
    model_id: uuid.UUID | None
    forget_request_id: uuid.UUID | None
    job_id: uuid.UUID | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class ChainVerificationOut(BaseModel):
    """The result of re-walking the hash chain; the walk stops at the first break."""

    ok: bool = Field(description="True when every event in the range links to the one before it.")
    checked: int = Field(description="Events found intact, from `from_seq` to `to_seq`.")
    from_seq: int = Field(description="The first seq of the range walked.")
    to_seq: int | None = Field(description="The last seq found intact (null when none was).")
    first_broken_seq: int | None = Field(description="Where the chain breaks (null when ok).")
    reason: str | None = Field(description="Why it breaks there (null when ok).")
    last_hash: str | None = Field(description="The hash of event `to_seq`: the head this walk vouches for.")
    heads_checked: int = Field(
        0, description="Signed chain heads (stored, and the one supplied) whose seq the walk found with their hash."
    )
    latest_head_seq: int | None = Field(
        None,
        description="The last seq a matching signed head vouches for: events after it are covered by no signed "
        "head yet (a rewrite or deletion of them is caught only once a later head is signed).",
    )


class ChainHead(BaseModel):
    """The signed statement, exactly as signed (its canonical JSON is the signing input)."""

    type: Literal["unlearnd.audit-chain-head"]
    version: int = Field(1, ge=1)
    seq: int = Field(ge=1, le=2**63 - 1)
    hash: str = Field(pattern="^[0-9a-f]{64}$")
    signed_at: str = Field(max_length=64, description="ISO 8601, UTC, as signed.")
    kid: str = Field(max_length=64)


class HeadSignature(BaseModel):
    alg: Literal["Ed25519"]
    kid: str = Field(max_length=64)
    value: str = Field(max_length=200, description="base64url Ed25519 signature over the head's canonical JSON.")


class SignedChainHead(BaseModel):
    """A signed chain head: keep it, and pass it back to verify (``?head=``) or to the offline verifier."""

    head: ChainHead
    signature: HeadSignature
