from __future__ import annotations

from collections.abc import Iterator

from unlearnd_client.schemas import Batch, Job
from unlearnd_client.transport import Transport


class Jobs:
    def __init__(self, transport: Transport):
        self._t = transport

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._t.json("GET", f"/v1/jobs/{job_id}"))

    def list(self, *, model_id: str | None = None, state: str | None = None, page_size: int = 100) -> Iterator[Job]:
        items = self._t.pages("/v1/jobs", {"model_id": model_id, "state": state}, page_size=page_size)
        return (Job.model_validate(j) for j in items)

    def batches(self, job_id: str, *, attempt: int | None = None, page_size: int = 100) -> Iterator[Batch]:
        """The job's per-batch log (loss, learning rate, samples seen), step by step."""
        items = self._t.pages(f"/v1/jobs/{job_id}/batches", {"attempt": attempt}, page_size=page_size)
        return (Batch.model_validate(b) for b in items)

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._t.json("POST", f"/v1/jobs/{job_id}/cancel"))
