"""A Python client for the unlearnd API: typed calls, retries with backoff, cursor pages as
iterators, and :meth:`Client.wait` for a forget request's final state.

    from unlearnd_client import Client

    with Client("http://127.0.0.1:8000", "unl_...") as client:
        model = client.models.resolve("digits-cnn")
        submitted = client.forget_requests.submit(model.id, class_labels=[3])
        final = client.wait(submitted.id)
        client.models.download(model.id, "forgot-3.safetensors", version=final.job.result_version)

It needs httpx, tenacity, pydantic and cryptography (offline checks), never torch or the server.
"""

from unlearnd_client.client import DEFAULT_URL, Client
from unlearnd_client.errors import ApiError, ChecksumMismatch, ServiceUnreachable, UnlearndError, WaitTimeout
from unlearnd_client.progress import Polling, ProgressSource
from unlearnd_client.retry import NO_RETRY, RetryPolicy
from unlearnd_client.schemas import (
    AuditEvent,
    Dataset,
    Download,
    ForgetRequest,
    Job,
    Model,
    Outcome,
    Progress,
    Version,
)

__all__ = [
    "DEFAULT_URL",
    "NO_RETRY",
    "ApiError",
    "AuditEvent",
    "ChecksumMismatch",
    "Client",
    "Dataset",
    "Download",
    "ForgetRequest",
    "Job",
    "Model",
    "Outcome",
    "Polling",
    "Progress",
    "ProgressSource",
    "RetryPolicy",
    "ServiceUnreachable",
    "UnlearndError",
    "Version",
    "WaitTimeout",
]
