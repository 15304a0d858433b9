"""The engine's hooks, backed by the database: per-batch records, progress, lease, cancellation."""

from __future__ import annotations

import threading
import time

from app.db import commit, session_scope
from app.jobs import service as jobs
from app.jobs.states import CANCELLING, RUNNING
from app.jobs.tables import Job
from app.settings import get_settings
from workers.engine.runtime import BatchRecord
from workers.runner.db_retry import with_db_retry


class LostOwnership(Exception):
    """Another attempt owns the job now (this worker's lease expired): stop without writing."""


class JobReporter:
    """Buffers batch records and flushes them with the progress at most every flush interval.

    Each flush also renews the lease and reads the job's state back, which is how a cancel
    request reaches the running method (checked before every batch).
    """

    def __init__(self, job: Job):
        self.job = job
        self.interval = get_settings().batch_flush_interval_s
        self.buffer: list[dict] = []
        self.last: BatchRecord | None = None
        self.state = RUNNING
        self._last_flush = time.monotonic()

    def on_batch(self, record: BatchRecord) -> None:
        row = record.as_dict()
        row.pop("total_steps")
        self.buffer.append(row)
        self.last = record
        if time.monotonic() - self._last_flush >= self.interval:
            self.flush()

    def should_cancel(self) -> bool:
        if self.state not in (RUNNING, CANCELLING):
            raise LostOwnership(f"job {self.job.id} is {self.state} for this worker")
        return self.state == CANCELLING

    def flush(self, phase: str | None = None) -> str:
        last = self.last

        def write() -> str:
            with session_scope() as db:
                state = jobs.record_progress(
                    db,
                    self.job,
                    self.buffer,
                    phase=phase or (last.phase if last else None),
                    step=last.step if last else 0,
                    total_steps=last.total_steps if last else None,
                )
                commit(db)
            return state

        self.state = with_db_retry(write, f"job {self.job.id} progress")
        self.buffer = []
        self._last_flush = time.monotonic()
        return self.state


class Heartbeat:
    """Renews the job's lease from a thread, so long phases without batches (loading, evaluating,
    writing the checkpoint) do not look like a dead worker to the reconciler."""

    def __init__(self, job: Job):
        self.job = job
        self.period = max(1.0, get_settings().job_lease_seconds / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                with session_scope() as db:
                    jobs.heartbeat(db, self.job)
                    commit(db)
            except Exception:  # a missed beat is survivable; the next one may get through
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
