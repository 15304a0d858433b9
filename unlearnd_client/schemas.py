"""The API's answers as typed objects. They mirror the server's response schemas (app/*/schemas.py)
without importing them, so the client installs and runs without the server's dependencies; fields
the server adds later are kept (``extra="allow"``) rather than rejected."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


class ApiObject(BaseModel):
    model_config = ConfigDict(extra="allow")


class Dataset(ApiObject):
    id: str
    name: str
    source: str
    format: str
    num_rows: int
    rows_in_file: int | None = None
    classes: list[int] = []
    splits: dict[str, int] = {}
    sha256: str
    size_bytes: int
    created_at: datetime


class Model(ApiObject):
    id: str
    name: str
    architecture: str
    config: dict[str, Any] = {}
    dataset_id: str
    state: str
    head_version: int | None
    device_class: str | None = None
    parameter_count: int | None = None
    created_at: datetime
    training_job_id: str | None = None


class Version(ApiObject):
    model_id: str
    version: int
    parent_version: int | None
    state: str
    sha256: str
    size_bytes: int
    created_by_job_id: str | None = None
    metrics: dict[str, Any] = {}
    created_at: datetime
    retired_at: datetime | None = None
    checkpoint_url: str


class Progress(ApiObject):
    fraction: float
    phase: str | None
    step: int
    total_steps: int | None


class Job(ApiObject):
    id: str
    kind: str
    model_id: str
    state: str
    attempt: int
    method: str
    source_version: int | None
    result_version: int | None
    progress: Progress
    metrics: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    forget_request_ids: list[str] = []

    @property
    def guarantee(self) -> str | None:
        """exact, verified or unverified once the job made a version; the rule the certificate uses
        (app/certificates/service.py): a job from before the verification gate is exact only if it retrained."""
        if self.state != "SUCCEEDED" or self.kind != "unlearn":
            return None
        gate = (self.metrics or {}).get("verification")
        if isinstance(gate, dict) and gate.get("guarantee"):
            return str(gate["guarantee"])
        return "exact" if self.method == "retrain" else "unverified"


class Outcome(StrEnum):
    """What a finished forget request amounts to; the CLI's exit code follows it."""

    PENDING = "pending"
    COMPLETED = "completed"  # SUCCEEDED with an exact or verified guarantee
    UNVERIFIED = "unverified"  # SUCCEEDED, accepted although verification failed
    FAILED = "failed"
    CANCELLED = "cancelled"


class ForgetRequest(ApiObject):
    id: str
    request_id: str
    model_id: str
    regulation: str
    scope: dict[str, Any]
    method: str
    params: dict[str, Any] = {}
    on_verification_failure: str | None = None
    state: str
    received_at: datetime
    due_at: datetime
    updated_at: datetime
    jobs: list[Job] = []
    # set by ForgetRequests.submit, not sent by the API
    idempotency_key: str | None = Field(None, exclude=True)
    replayed: bool = Field(False, exclude=True, description="The API answered a retry with the original answer.")

    @property
    def job(self) -> Job | None:
        """The newest job serving the request (jobs come oldest first)."""
        return self.jobs[-1] if self.jobs else None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def outcome(self) -> Outcome:
        if self.state == "FAILED":
            return Outcome.FAILED
        if self.state == "CANCELLED":
            return Outcome.CANCELLED
        if self.state != "SUCCEEDED":
            return Outcome.PENDING
        guarantee = self.job.guarantee if self.job else None
        return Outcome.UNVERIFIED if guarantee in (None, "unverified") else Outcome.COMPLETED


class Batch(ApiObject):
    attempt: int
    step: int
    phase: str
    epoch: int
    batch: int
    loss: float | None
    samples_seen: int


class AuditEvent(ApiObject):
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    model_id: str | None = None
    forget_request_id: str | None = None
    job_id: str | None = None
    payload: dict[str, Any] = {}
    prev_hash: str
    hash: str


class ChainVerification(ApiObject):
    ok: bool
    checked: int
    from_seq: int
    to_seq: int | None
    first_broken_seq: int | None
    reason: str | None
    last_hash: str | None
    heads_checked: int = 0
    latest_head_seq: int | None = None


class Download(ApiObject):
    """A checkpoint written to ``path`` whose sha256 matched the version's."""

    model_id: str
    version: int
    path: str
    sha256: str
    size_bytes: int
