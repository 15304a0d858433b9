"""No residual copies, update logs: after an erasure, the records of the batches that held an erased
sample leave every update log of the model, bytes included.

A log stores each training step's parameter delta (and, for the first epoch, per-sample gradients)
in chunk files; each step's delta encodes its batch, so it is a copy of the erased data. When an
unlearn job has succeeded, :func:`purge_for_job` goes through every log of its model (the current
one and those of earlier versions, e.g. one a retrain detached) and

- finds the live steps whose batch held a sample of the job's forget requests (sample IDs, or every
  training sample of the erased classes) with the inverted index;
- rewrites each chunk file that holds a tensor of such a step, or of a step no longer live (amnesiac
  unlearning subtracted it, or an earlier purge's rewrite missed its file), as a new
  content-addressed file without them; a chunk left empty loses its row;
- marks those steps ``purged`` (their rows stay: the other samples of their batches keep index rows,
  so a later amnesiac request for one of them sees that part of its training is gone and refuses,
  see ``UpdateLogReader.coverage``; a step already marked ``subtracted`` stays so, its whole batch's
  influence is gone) and deletes the erased samples' own index rows, in steps of every state;
- updates the log's byte counters (``stored_bytes``, ``gradient_bytes`` and ``dense_bytes``, the
  dense-fp32 baseline, now describe the steps still stored; ``steps_recorded`` stays what training
  recorded, the API's ``steps_remaining`` is what is live);
- records one ``update_log.steps_purged`` audit event per log, with counts, the old and new sha256
  of every chunk it touched and the bytes removed; never sample IDs (the forget requests' scope
  hashes stand for them). A log that held nothing to purge gets the event too: it is the evidence
  that the log was checked, and the marker that this job's purge is done.

The caller commits. Old chunk files are deleted only after that commit, by
:func:`delete_superseded`: until then each is listed as a row of kind ``superseded`` written in the
purge's transaction, so a failed commit loses nothing (the old rows and files are intact; new files
written before it are orphans holding only kept steps, re-created byte-identical by the retry), and
a crash after the commit leaves rows that the next pass finds and deletes. Each deletion is audited
(``update_log.chunk_files_deleted``).

Work is found without extra state: a succeeded unlearn job of a model with an update log and no
``update_log.steps_purged`` event is pending (:func:`pending_jobs`). The worker runs the purge right
after the erasure commits, and every periodic reconcile pass retries what is pending.

Concurrency: the purge locks the model's logs (two passes never purge one model at once) and its
QUEUED and active jobs. With a job of the model running it does nothing (that job's reader holds the
old chunk keys; its own success triggers the next pass); a claim waits for the purge's commit.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.forget_requests import repository as requests_repo
from app.forget_requests.tables import ForgetRequest
from app.jobs import repository as jobs_repo
from app.jobs.states import ACTIVE, SUCCEEDED
from app.jobs.tables import Job
from app.models import repository as models_repo
from app.models.tables import Model
from app.storage import ArtifactMissingError, ArtifactStore
from app.update_logs import repository
from app.update_logs.tables import PURGED as PURGED_STEP
from app.update_logs.tables import UpdateLog, UpdateLogChunk
from workers.engine.log_chunks import stored_steps, without_steps

PURGED = "update_log.steps_purged"
FILES_DELETED = "update_log.chunk_files_deleted"
CHUNK_KINDS = ("deltas", "gradients")


class Outcome(Enum):
    PURGED = "purged"  # every log of the model checked, events recorded (the caller commits)
    ALREADY = "already"  # another pass did it
    BUSY = "busy"  # a job of the model is running: a later pass does it
    NOT_APPLICABLE = "not_applicable"  # not a succeeded unlearn job, or its model has no update log


@dataclass
class LogPurge:
    log_id: uuid.UUID
    steps_purged: int = 0  # live steps whose batch held an erased sample, now marked purged
    sample_rows_purged: int = 0  # the erased samples' own index rows, deleted
    residual_steps_removed: int = 0  # steps no longer live whose bytes were still stored (subtracted)
    chunks: list[dict[str, Any]] = field(default_factory=list)  # the files rewritten or deleted
    chunks_missing: list[dict[str, Any]] = field(default_factory=list)  # listed, but not in the store

    @property
    def bytes_removed(self) -> int:
        return sum(c["old_size"] - c["new_size"] for c in self.chunks)


@dataclass
class JobPurge:
    outcome: Outcome
    logs: list[LogPurge] = field(default_factory=list)


def pending_jobs(db: Session, *, limit: int = 20) -> list[uuid.UUID]:
    return repository.jobs_pending_purge(db, PURGED, limit=limit)


def purge_for_job(db: Session, store: ArtifactStore, *, job_id: uuid.UUID, actor: str) -> JobPurge:
    """Purge from every update log of the job's model what the job erased, and what amnesiac
    unlearning already subtracted; the caller commits, then calls :func:`delete_superseded`."""
    job = jobs_repo.get(db, job_id)
    if job is None or job.kind != "unlearn" or job.state != SUCCEEDED:
        return JobPurge(Outcome.NOT_APPLICABLE)
    logs = repository.logs_of_model(db, job.model_id, lock=True)
    if not logs:
        return JobPurge(Outcome.NOT_APPLICABLE)
    if repository.purge_recorded(db, job.id, PURGED):  # read after the lock: sees a finished pass
        return JobPurge(Outcome.ALREADY)
    if any(state in ACTIVE for state in repository.lock_unfinished_jobs(db, job.model_id)):
        return JobPurge(Outcome.BUSY)
    model = models_repo.get(db, job.model_id)
    requests = [requests_repo.get(db, rid) for rid in jobs_repo.request_ids_of(db, job.id)]
    result = JobPurge(Outcome.PURGED)
    for log in logs:
        purged = purge_log(db, store, log, model, requests)
        _record_purge(db, log, model, job, requests, purged, actor)
        result.logs.append(purged)
    return result


def _erased_steps(db: Session, log: UpdateLog, model: Model, requests: list[ForgetRequest]) -> set[int]:
    """The live steps whose batch held an erased sample."""
    steps: set[int] = set()
    for fr in requests:
        if fr.scope_type == "sample_ids":
            steps.update(repository.steps_containing(db, log.id, list(fr.scope_values)))
        else:
            steps.update(repository.steps_with_labels(db, log.id, model.dataset_id, fr.scope_values))
    return steps


def _delete_erased_rows(db: Session, log: UpdateLog, model: Model, requests: list[ForgetRequest]) -> int:
    """The erased samples' own index rows go (they name erased data); the other samples' stay."""
    deleted = 0
    for fr in requests:
        if fr.scope_type == "sample_ids":
            deleted += repository.delete_sample_rows(db, log.id, list(fr.scope_values))
        else:
            deleted += repository.delete_class_rows(db, log.id, model.dataset_id, fr.scope_values)
    return deleted


def purge_log(
    db: Session, store: ArtifactStore, log: UpdateLog, model: Model, requests: list[ForgetRequest]
) -> LogPurge:
    """Purge one log: the live steps whose batch held a sample of ``requests``, and the bytes of every
    stored step that is no longer live. No audit event (:func:`purge_for_job` records it); the caller
    commits."""
    erased = _erased_steps(db, log, model, requests)
    # what each chunk file should hold from now on: the live steps, less the erased
    keep: dict[tuple[str, int], set[int]] = defaultdict(set)
    for row in repository.live_steps(db, log.id):
        if row.step in erased:
            continue
        keep[("deltas", row.chunk_index)].add(row.step)
        if row.grad_chunk_index is not None:
            keep[("gradients", row.grad_chunk_index)].add(row.step)

    out = LogPurge(log.id)
    removed: set[int] = set()
    held_steps = 0  # steps whose delta is still stored
    for chunk in repository.chunks(db, log.id):
        try:
            with store.open(chunk.artifact_key) as fh:
                present = stored_steps(fh)
        except ArtifactMissingError:  # no bytes left to purge; the purge of the others goes on
            out.chunks_missing.append({"kind": chunk.kind, "index": chunk.chunk_index, "sha256": chunk.sha256})
            continue
        drop = present - keep[(chunk.kind, chunk.chunk_index)]
        if chunk.kind == "deltas":
            held_steps += len(present - drop)
        if drop:
            out.chunks.append(_rewrite(db, store, chunk, drop))
            removed |= drop
    out.residual_steps_removed = len(removed - erased)
    out.steps_purged = repository.mark_steps(db, log.id, sorted(erased), PURGED_STEP)
    out.sample_rows_purged = _delete_erased_rows(db, log, model, requests)

    chunks = repository.chunks(db, log.id)
    log.stored_bytes = sum(c.size_bytes for c in chunks if c.kind == "deltas")
    log.gradient_bytes = sum(c.size_bytes for c in chunks if c.kind == "gradients")
    log.dense_bytes = held_steps * _dense_step_bytes(log)
    db.flush()
    return out


def _rewrite(db: Session, store: ArtifactStore, chunk: UpdateLogChunk, drop: set[int]) -> dict[str, Any]:
    """The chunk without the tensors of ``drop``, as a new file; the old one is listed for deletion."""
    data = store.read_verified(chunk.artifact_key, chunk.sha256)
    rewritten = without_steps(data, drop)
    change = {
        "kind": chunk.kind,
        "index": chunk.chunk_index,
        "steps_removed": len(drop),
        "old_sha256": chunk.sha256,
        "old_size": chunk.size_bytes,
        "new_sha256": None,
        "new_size": 0,
    }
    repository.supersede(db, chunk)
    if rewritten is None:
        repository.delete_chunk(db, chunk)
        return change
    stored = store.put_bytes(rewritten, kind="update_logs", suffix=".safetensors")
    chunk.artifact_key, chunk.sha256, chunk.size_bytes = stored.key, stored.sha256, stored.size
    db.flush()
    return {**change, "new_sha256": stored.sha256, "new_size": stored.size}


def _dense_step_bytes(log: UpdateLog) -> int:
    """One step's delta as dense fp32 (what the recorder counts per step)."""
    return sum(4 * math.prod(shape) for _name, shape in log.param_shapes)


def _record_purge(
    db: Session,
    log: UpdateLog,
    model: Model,
    job: Job,
    requests: list[ForgetRequest],
    purged: LogPurge,
    actor: str,
) -> None:
    audit.record(
        db,
        action=PURGED,
        actor=actor,
        tenant_id=model.tenant_id,
        entity_type="update_log",
        entity_id=log.id,
        model_id=model.id,
        job_id=job.id,
        payload={
            "log_version": log.version,
            "current_log": model.update_log_id == log.id,
            "scope_sha256": sorted({fr.scope_sha256 for fr in requests}),
            "steps_purged": purged.steps_purged,
            "sample_rows_purged": purged.sample_rows_purged,
            "residual_steps_removed": purged.residual_steps_removed,
            "steps_remaining": repository.remaining_steps(db, log.id),
            "steps_by_state": repository.step_counts(db, log.id),
            "chunks_rewritten": sum(1 for c in purged.chunks if c["new_sha256"]),
            "chunks_deleted": sum(1 for c in purged.chunks if not c["new_sha256"]),
            "chunks": purged.chunks,
            "chunks_missing": purged.chunks_missing,
            "bytes_removed": purged.bytes_removed,
            "stored_bytes": log.stored_bytes,
            "gradient_bytes": log.gradient_bytes,
        },
    )


def delete_superseded(db: Session, store: ArtifactStore, *, actor: str) -> int:
    """Delete the files that committed purges replaced, and their rows; the caller commits. A file
    still read by a chunk of another log (byte-identical: same key) is kept. Returns files deleted."""
    rows = repository.superseded(db)
    by_log: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    deleted = 0
    for row in rows:
        if repository.key_in_use(db, row.artifact_key):
            status = "kept: another update log holds the same bytes"
        elif store.delete(row.artifact_key):
            status, deleted = "deleted", deleted + 1
        else:
            status = "already absent"
        by_log[row.log_id].append({"sha256": row.sha256, "size": row.size_bytes, "file": status})
        repository.delete_chunk(db, row)
    for log_id, files in by_log.items():
        log = repository.get(db, log_id)
        model = models_repo.get(db, log.model_id)
        audit.record(
            db,
            action=FILES_DELETED,
            actor=actor,
            tenant_id=model.tenant_id,
            entity_type="update_log",
            entity_id=log_id,
            model_id=model.id,
            payload={"files": files, "bytes_deleted": sum(f["size"] for f in files if f["file"] == "deleted")},
        )
    return deleted
