"""Housekeeping at the task boundary (no torch here: the reconciler and the CLI import it)."""

from __future__ import annotations

import logging
import uuid

from app.db import commit, session_scope
from app.models import retention
from app.settings import get_settings
from app.storage import get_artifact_store
from app.update_logs import purge

log = logging.getLogger(__name__)


def purge_retired_versions(actor: str) -> int:
    """Delete the files of versions retired long enough (at once by default): an erasure is only
    complete when no earlier copy of the model is left. Run by the worker right after an erasure
    commits, in a transaction of its own (a failure here must not undo the erasure), and by every
    periodic reconcile pass, which retries what failed and honours a grace period."""
    try:
        with session_scope() as db:
            purged = retention.purge_due(db, get_artifact_store(), actor=actor)
            commit(db)
    except Exception:
        log.exception("purging retired versions failed; the periodic pass will retry")
        return 0
    if purged:
        log.info("purged the files of %d retired version(s)", len(purged))
    return len(purged)


def sweep_orphan_checkpoints() -> int:
    """Delete checkpoint files that no version row names (see app.models.retention); by the periodic
    reconcile pass. Logged, not audited: such a file never belonged to a recorded version."""
    try:
        with session_scope() as db:
            swept = retention.sweep_orphan_checkpoints(
                db, get_artifact_store(), grace_s=get_settings().orphan_checkpoint_grace_s
            )
    except Exception:
        log.exception("sweeping orphan checkpoints failed; the periodic pass will retry")
        return 0
    if swept:
        log.warning("deleted %d checkpoint file(s) no version names (a worker died before its commit)", len(swept))
    return len(swept)


def purge_update_logs(actor: str, *, job_id: uuid.UUID | None = None, limit: int = 50) -> int:
    """Purge from the update logs the records of batches that held erased samples (and the bytes of
    steps amnesiac unlearning subtracted). Run like :func:`purge_retired_versions`: by the worker
    right after an erasure commits, for that job (a failure here must not undo the erasure), and by
    every periodic reconcile pass for each succeeded erasure whose purge is not recorded yet (at
    most ``limit``, oldest first), which retries what failed or waited for a running job. One
    transaction per erasure; the old chunk files are deleted after it commits, and first of all any
    that a pass stopped between its commit and its deletions left behind. Returns the erasures whose
    purge was committed."""
    store = get_artifact_store()
    _delete_superseded(actor)
    if job_id is not None:
        pending = [job_id]
    else:
        try:
            with session_scope() as db:
                pending = purge.pending_jobs(db, limit=limit)
        except Exception:
            log.exception("looking for update-log purges failed; the periodic pass will retry")
            return 0
    done = 0
    for pending_id in pending:
        try:
            with session_scope() as db:
                result = purge.purge_for_job(db, store, job_id=pending_id, actor=actor)
                commit(db)
        except Exception:
            log.exception("purging update logs for job %s failed; the periodic pass will retry", pending_id)
            continue
        if result.outcome is purge.Outcome.PURGED:
            done += 1
            steps = sum(p.steps_purged + p.residual_steps_removed for p in result.logs)
            log.info("job %s: purged %d step(s) from %d update log(s)", pending_id, steps, len(result.logs))
            _delete_superseded(actor)
        elif result.outcome is purge.Outcome.BUSY:
            log.info("job %s: update-log purge waits for the model's running job", pending_id)
    return done


def _delete_superseded(actor: str) -> int:
    try:
        with session_scope() as db:
            deleted = purge.delete_superseded(db, get_artifact_store(), actor=actor)
            commit(db)
    except Exception:
        log.exception("deleting superseded update-log chunk files failed; the periodic pass will retry")
        return 0
    return deleted
