"""Housekeeping at the task boundary (no torch here: the reconciler and the CLI import it).

Each piece runs in a transaction of its own: run by the worker right after an erasure commits, a
failure here must not undo the erasure, and every periodic reconcile pass retries what failed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from app.audit import heads, sequencer
from app.datasets import file_erasure
from app.db import commit, session_scope
from app.models import retention
from app.settings import get_settings
from app.storage import get_artifact_store
from app.update_logs import purge

log = logging.getLogger(__name__)
T = TypeVar("T")


def _own_transaction(work: Callable[[Session], T], failed: str) -> T | None:
    """``work`` committed in a session of its own; None (logged, retried by the next pass) if it failed."""
    try:
        with session_scope() as db:
            result = work(db)
            commit(db)
            return result
    except Exception:
        log.exception("%s failed; the periodic pass will retry", failed)
        return None


def purge_retired_versions(actor: str) -> int:
    """Delete the files of versions retired long enough (at once by default): an erasure is only
    complete when no earlier copy of the model is left. Honours the grace period."""
    purged = _own_transaction(
        lambda db: retention.purge_due(db, get_artifact_store(), actor=actor), "purging retired versions"
    )
    if purged:
        log.info("purged the files of %d retired version(s)", len(purged))
    return len(purged or [])


def sweep_orphan_checkpoints() -> int:
    """Delete checkpoint files that no version row names (see app.models.retention); by the periodic
    reconcile pass. Logged, not audited: such a file never belonged to a recorded version."""
    grace_s = get_settings().orphan_checkpoint_grace_s
    swept = _own_transaction(
        lambda db: retention.sweep_orphan_checkpoints(db, get_artifact_store(), grace_s=grace_s),
        "sweeping orphan checkpoints",
    )
    if swept:
        log.warning("deleted %d checkpoint file(s) no version names (a worker died before its commit)", len(swept))
    return len(swept or [])


def purge_update_logs(actor: str, *, job_id: uuid.UUID | None = None, limit: int = 50) -> int:
    """Purge from the update logs the records of batches that held erased samples (and the bytes of
    steps amnesiac unlearning subtracted): for ``job_id`` right after it succeeded, or on a periodic
    pass for each succeeded erasure whose purge is not recorded yet (at most ``limit``, oldest
    first), which retries what failed or waited for a running job. One transaction per erasure; the
    old chunk files are deleted after it commits, and first of all any that a pass stopped between
    its commit and its deletions left behind. Returns the erasures whose purge was committed."""
    store = get_artifact_store()
    _delete_superseded(actor)
    pending = (
        [job_id]
        if job_id is not None
        else _own_transaction(lambda db: purge.pending_jobs(db, limit=limit), "looking for update-log purges")
    )
    done = 0
    for pending_id in pending or []:
        result = _own_transaction(
            lambda db, jid=pending_id: purge.purge_for_job(db, store, job_id=jid, actor=actor),
            f"purging update logs for job {pending_id}",
        )
        if result is None:
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
    deleted = _own_transaction(
        lambda db: purge.delete_superseded(db, get_artifact_store(), actor=actor),
        "deleting superseded update-log chunk files",
    )
    return deleted or 0


def erase_from_dataset_files(actor: str, *, limit: int = 20) -> int:
    """Remove tombstoned rows from the stored dataset files (app/datasets/file_erasure.py): each due
    dataset (at most ``limit``, longest due first) rewritten in a transaction of its own, then the
    files those rewrites replaced deleted after their commits, and first of all any that a pass
    stopped between its commit and its deletion left. Returns the files rewritten."""
    store = get_artifact_store()
    _delete_superseded_dataset_files(actor)
    due = _own_transaction(lambda db: file_erasure.due(db, limit=limit), "looking for dataset files to rewrite")
    done = 0
    for dataset_id in due or []:
        result = _own_transaction(
            lambda db, d=dataset_id: file_erasure.rewrite(db, store, dataset_id=d, actor=actor),
            f"removing erased rows from the file of dataset {dataset_id}",
        )
        if result is not None:
            done += 1
            log.info("dataset %s: %d erased row(s) removed from its stored file", dataset_id, result.rows_removed)
    if due:
        _delete_superseded_dataset_files(actor)
    return done


def _delete_superseded_dataset_files(actor: str) -> int:
    deleted = _own_transaction(
        lambda db: file_erasure.delete_superseded(db, get_artifact_store(), actor=actor),
        "deleting replaced dataset files",
    )
    return deleted or 0


def sign_chain_head() -> int | None:
    """Sign the audit chain's head (app/audit/heads.py), so a later rewrite or truncation of the
    events up to it is caught; the seq signed (None: empty chain, or it failed and the next pass retries)."""
    sequencer.chain_pending(wait=True)
    return _own_transaction(lambda db: getattr(heads.sign_head(db), "seq", None), "signing the audit chain's head")
