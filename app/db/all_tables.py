"""Import every table so Base.metadata is complete (Alembic's check and the tests use it)."""

from app.audit.tables import AuditEvent
from app.auth.tables import ApiKey
from app.datasets.tables import Dataset, DatasetSample
from app.forget_requests.tables import ForgetRequest, IdempotencyKey
from app.jobs.tables import Job, JobBatch, JobRequest
from app.models.tables import Model, ModelVersion
from app.update_logs.tables import UpdateLog, UpdateLogChunk, UpdateLogSample, UpdateLogStep

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Dataset",
    "DatasetSample",
    "ForgetRequest",
    "IdempotencyKey",
    "Job",
    "JobBatch",
    "JobRequest",
    "Model",
    "ModelVersion",
    "UpdateLog",
    "UpdateLogChunk",
    "UpdateLogSample",
    "UpdateLogStep",
]
