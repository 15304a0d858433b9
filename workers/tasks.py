"""Celery task bodies: thin adapters over workers.runner and app.jobs.service."""

from __future__ import annotations

import logging

from app.observability import context as log_context
from app.queue import RECONCILE, RUN_JOB, celery_app

log = logging.getLogger(__name__)
app = celery_app()
DEFER_SECONDS = 2.0  # how soon a job waiting for its model's previous job tries again


@app.task(name=RUN_JOB, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: str) -> str:
    from app.jobs.service import Claim
    from workers.runner import execute_job  # torch is imported here, in the pool child only

    with log_context.bound(job_id=job_id):  # every log line of this job carries its id
        outcome = execute_job(job_id, worker=self.request.hostname or "worker")
    if outcome is Claim.DEFER:
        raise self.retry(countdown=DEFER_SECONDS)
    return outcome.value


@app.task(name=RECONCILE)
def reconcile() -> dict[str, int]:
    from app.audit import sequencer
    from app.db import commit, session_scope
    from app.jobs.service import reconcile as reconcile_jobs
    from workers.housekeeping import (
        erase_from_dataset_files,
        purge_retired_versions,
        purge_update_logs,
        sign_chain_head,
        sweep_orphan_checkpoints,
    )

    with session_scope() as db:
        report = reconcile_jobs(db)
        commit(db)
    sequencer.chain_pending(wait=False)  # events a process committed but died before chaining
    if any(report.values()):
        log.info("reconciled jobs: %s", report)
    return {
        **report,
        "versions_purged": purge_retired_versions("reconciler"),
        "update_log_purges": purge_update_logs("reconciler"),
        "dataset_files_rewritten": erase_from_dataset_files("reconciler"),
        "orphan_checkpoints_deleted": sweep_orphan_checkpoints(),
        "chain_head_seq": sign_chain_head() or 0,
    }
