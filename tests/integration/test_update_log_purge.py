"""No residual copies in update logs: when an erasure succeeds, the records of the batches that held
an erased sample leave every log of the model (marked purged, the erased samples' index rows deleted,
chunk bytes removed), as do the bytes of steps amnesiac unlearning subtracted (marked subtracted);
old chunk files are deleted from the artifact store after the commit; each purge is audited; amnesiac
unlearning keeps working on what is left."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from safetensors import safe_open
from sqlalchemy import select

from app.core.ids import uuid7
from app.datasets.tables import DatasetSample
from app.db import new_session
from app.jobs import repository as jobs_repo
from app.jobs.tables import Job, JobRequest
from app.models import repository as models_repo
from app.storage import get_artifact_store
from app.update_logs import purge
from app.update_logs import repository as logs_repo
from app.update_logs.tables import LIVE, PURGED, SUBTRACTED, UpdateLog, UpdateLogChunk, UpdateLogSample, UpdateLogStep
from tests.helpers import FAST_RECIPE, count_train, forget, register_digits, train_ids, train_model, wait_request
from workers.engine.log_chunks import step_of
from workers.housekeeping import purge_update_logs

pytestmark = pytest.mark.integration

# small chunks: an erasure touches some chunk files and leaves others; first-epoch gradients too
LOG_SPEC = {"mode": "dense", "first_epoch_gradients": ["fc2"], "chunk_steps": 8}


def _logged_model(client, epochs: int, seed: int) -> tuple[dict, uuid.UUID]:
    """Its own seed per test: another log with byte-identical chunks would share their files."""
    recipe = {**FAST_RECIPE, "epochs": epochs, "seed": seed}
    model = train_model(client, register_digits(client)["id"], update_log=LOG_SPEC, recipe=recipe)
    return model, uuid.UUID(model["update_log_id"])


def _succeeded(client, resp) -> dict:
    assert resp.status_code == 202, resp.text
    fr = wait_request(client, resp.json()["id"])
    assert fr["state"] == "SUCCEEDED", fr
    return fr["jobs"][0]


def _file(key: str) -> Path:
    return Path(get_artifact_store().root) / key


def _old_files(event: dict) -> list[Path]:
    return [
        _file(get_artifact_store().key_for("update_logs", c["old_sha256"], ".safetensors"))
        for c in event["payload"]["chunks"]
    ]


def _purge_event(client, db, job_id: str, log_id: uuid.UUID, timeout: float = 30) -> dict:
    """The job's purge event, once the worker's pass after the erasure has also deleted the old files
    (nothing of the log is listed for deletion any more)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        params = {"job_id": job_id, "action": purge.PURGED}
        events = client.get("/v1/audit-events", params=params).json()["items"]
        if events and not _superseded(db, log_id):
            assert len(events) == 1, events  # one log, one event
            return events[0]
        time.sleep(0.2)
    raise AssertionError(f"no completed update-log purge for job {job_id}")


def _superseded(db, log_id) -> list[tuple[str, str, int]]:
    db.rollback()
    q = select(UpdateLogChunk).where(UpdateLogChunk.log_id == log_id, UpdateLogChunk.kind == logs_repo.SUPERSEDED)
    return [(r.artifact_key, r.sha256, r.size_bytes) for r in db.scalars(q)]


def _assert_old_files_gone(db, event: dict) -> None:
    """Deleted, unless a chunk of another log is byte-identical (same key): that one stays."""
    for path in _old_files(event):
        key = str(path.relative_to(get_artifact_store().root))
        assert not path.exists() or logs_repo.key_in_use(db, key), key


def _live_steps(db, log_id, state: str = LIVE) -> dict[int, UpdateLogStep]:
    db.rollback()  # a fresh snapshot
    q = select(UpdateLogStep).where(UpdateLogStep.log_id == log_id, UpdateLogStep.state == state)
    return {s.step: s for s in db.scalars(q)}


def _index_rows(db, log_id, sample_ids=None, steps=None) -> list[tuple[str, int]]:
    """(sample, step) rows of the inverted index, in steps of every state."""
    q = select(UpdateLogSample.sample_id, UpdateLogSample.step).where(UpdateLogSample.log_id == log_id)
    if sample_ids is not None:
        q = q.where(UpdateLogSample.sample_id.in_(sample_ids))
    if steps is not None:
        q = q.where(UpdateLogSample.step.in_(steps))
    return [tuple(r) for r in db.execute(q)]


def _untouched(db, log_id, candidates: list[str], n: int) -> list[str]:
    """``n`` of these samples none of whose steps was purged (amnesiac would refuse them)."""
    purged = set(_live_steps(db, log_id, PURGED))
    rows = _index_rows(db, log_id, candidates)
    return [c for c in candidates if not any(s in purged for sid, s in rows if sid == c)][:n]


def _steps_of(db, log_id, sample_ids) -> set[int]:
    return set(logs_repo.steps_containing(db, log_id, sample_ids))


def _tensor_steps(key: str) -> set[int]:
    with safe_open(str(_file(key)), "pt") as f:
        return {step_of(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)


def _assert_files_match_the_index(db, log_id) -> dict[str, set[int]]:
    """Every chunk file holds exactly the tensors of the steps the index still has, and is intact;
    nothing waits for deletion. Returns the steps stored per kind."""
    live = _live_steps(db, log_id)
    want: dict[tuple[str, int], set[int]] = defaultdict(set)
    for s in live.values():
        want[("deltas", s.chunk_index)].add(s.step)
        if s.grad_chunk_index is not None:
            want[("gradients", s.grad_chunk_index)].add(s.step)
    stored: dict[str, set[int]] = defaultdict(set)
    rows = list(db.scalars(select(UpdateLogChunk).where(UpdateLogChunk.log_id == log_id)))
    assert all(r.kind in purge.CHUNK_KINDS for r in rows), "superseded files are still listed"
    for row in rows:
        data = _file(row.artifact_key).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256 and len(data) == row.size_bytes
        steps = _tensor_steps(row.artifact_key)
        assert steps == want.pop((row.kind, row.chunk_index)), (row.kind, row.chunk_index)
        stored[row.kind] |= steps
    assert not want, f"indexed steps without a chunk file: {want}"
    assert stored["deltas"] == set(live)
    log = db.get(UpdateLog, log_id)
    db.refresh(log)
    assert log.stored_bytes == sum(r.size_bytes for r in rows if r.kind == "deltas")
    assert log.gradient_bytes == sum(r.size_bytes for r in rows if r.kind == "gradients")
    assert log.dense_bytes == len(live) * sum(4 * n for n in _numels(log))
    return stored


def _numels(log: UpdateLog) -> list[int]:
    out = []
    for _name, shape in log.param_shapes:
        n = 1
        for d in shape:
            n *= d
        out.append(n)
    return out


def test_erasures_purge_logged_batches_and_amnesiac_still_works_on_the_rest(client, db):
    model, log_id = _logged_model(client, epochs=3, seed=11)
    mid = model["id"]
    recorded = len(_live_steps(db, log_id))
    assert recorded == 3 * -(-len(train_ids()) // FAST_RECIPE["batch_size"])
    first_keys = {r.artifact_key for r in db.scalars(select(UpdateLogChunk).where(UpdateLogChunk.log_id == log_id))}
    _assert_files_match_the_index(db, log_id)

    ids = train_ids(n=30)
    subtracted_ids, erased_ids = ids[:2], ids[10:12]

    # 1. amnesiac: its steps leave the log (marked subtracted) when it succeeds; the purge then removes
    # their bytes and the erased samples' own index rows
    consumed = _steps_of(db, log_id, subtracted_ids)
    job = _succeeded(
        client,
        forget(
            client,
            mid,
            {"sample_ids": subtracted_ids},
            "amnesiac",
            {"repair_epochs": 0},
            on_verification_failure="accept",
        ),
    )
    assert job["metrics"]["update_log_steps_removed"] == len(consumed) == 6
    event = _purge_event(client, db, job["id"], log_id)
    p = event["payload"]
    assert event["entity_id"] == str(log_id) and event["model_id"] == mid and p["current_log"] is True
    assert p["steps_purged"] == 0  # no live step held them any more
    assert p["sample_rows_purged"] == len(subtracted_ids) * 3  # theirs, one per epoch, in subtracted steps
    assert set(_live_steps(db, log_id, SUBTRACTED)) == consumed and not _index_rows(db, log_id, subtracted_ids)
    assert p["steps_by_state"] == {"live": recorded - len(consumed), "subtracted": len(consumed), "purged": 0}
    assert p["residual_steps_removed"] == len(consumed) and p["steps_remaining"] == recorded - len(consumed)
    assert p["chunks_rewritten"] == len(p["chunks"]) > 0 and p["chunks_deleted"] == 0
    assert p["bytes_removed"] == sum(c["old_size"] - c["new_size"] for c in p["chunks"]) > 0
    assert sum(c["steps_removed"] for c in p["chunks"] if c["kind"] == "deltas") == len(consumed)
    _assert_old_files_gone(db, event)
    stored = _assert_files_match_the_index(db, log_id)
    assert not stored["deltas"] & consumed and not stored["gradients"] & consumed

    # 2. an erasure by another method (the log stays attached): the batches that held the samples go
    erased = _steps_of(db, log_id, erased_ids)
    assert 3 <= len(erased) <= 6 and not erased & consumed
    others = {(sid, s) for sid, s in _index_rows(db, log_id, steps=erased) if sid not in erased_ids}
    job = _succeeded(
        client,
        forget(client, mid, {"sample_ids": erased_ids}, "finetune", {"epochs": 1}, on_verification_failure="accept"),
    )
    event = _purge_event(client, db, job["id"], log_id)
    p = event["payload"]
    assert p["steps_purged"] == len(erased) and p["sample_rows_purged"] == len(erased_ids) * 3
    # the steps stay, marked purged; the other samples of their batches keep their index rows (so a later
    # amnesiac request for one of them knows part of its training is gone), the erased samples do not
    assert set(_live_steps(db, log_id, PURGED)) == erased
    assert set(_index_rows(db, log_id, steps=erased)) == others and not _index_rows(db, log_id, erased_ids)
    assert p["residual_steps_removed"] == 0
    assert p["steps_remaining"] == recorded - len(consumed) - len(erased)
    assert not any(sid in json.dumps(event) for sid in erased_ids)  # counts and hashes, no sample IDs
    _assert_old_files_gone(db, event)
    live = _live_steps(db, log_id)
    assert not erased & set(live) and len(live) == recorded - len(consumed) - len(erased)
    assert not _steps_of(db, log_id, erased_ids)
    stored = _assert_files_match_the_index(db, log_id)
    assert not stored["deltas"] & erased and not stored["gradients"] & erased
    assert not any(_file(k).exists() for k in first_keys - {r.artifact_key for r in db.scalars(select(UpdateLogChunk))})
    log_out = client.get(f"/v1/models/{mid}/update-log").json()
    assert log_out["steps_recorded"] == recorded and log_out["steps_remaining"] == len(live)
    assert log_out["steps_subtracted"] == len(consumed) and log_out["steps_purged"] == len(erased)
    assert log_out["stored_bytes"] == p["stored_bytes"]
    assert log_out["storage_ratio"] == round(p["stored_bytes"] / log_out["dense_bytes"], 6)  # same steps

    # 3. amnesiac on other samples reads the rewritten chunks and subtracts what is left of theirs
    # (samples that shared a purged step would be refused: tests/integration/test_update_log_completeness.py)
    later_ids = _untouched(db, log_id, ids[20:], 2)
    assert len(later_ids) == 2
    remaining = _steps_of(db, log_id, later_ids)
    assert remaining
    job = _succeeded(
        client,
        forget(
            client, mid, {"sample_ids": later_ids}, "amnesiac", {"repair_epochs": 0}, on_verification_failure="accept"
        ),
    )
    assert job["metrics"]["update_log_steps_removed"] == len(remaining)
    assert job["metrics"]["update_log_bytes_read"] > 0
    p = _purge_event(client, db, job["id"], log_id)["payload"]
    assert p["residual_steps_removed"] == len(remaining) and p["steps_purged"] == 0
    assert len(_live_steps(db, log_id)) == recorded - len(consumed) - len(erased) - len(remaining)
    _assert_files_match_the_index(db, log_id)


def test_a_class_erasure_by_retrain_purges_the_detached_log_too(client, db):
    model, log_id = _logged_model(client, epochs=2, seed=12)
    recorded = len(_live_steps(db, log_id))
    held_class = set(
        db.scalars(
            select(UpdateLogSample.step)
            .distinct()
            .join(
                DatasetSample,
                (DatasetSample.dataset_id == uuid.UUID(model["dataset_id"]))
                & (DatasetSample.sample_id == UpdateLogSample.sample_id),
            )
            .where(UpdateLogSample.log_id == log_id, DatasetSample.label == 3)
        )
    )
    assert 0 < len(held_class) <= recorded
    job = _succeeded(client, forget(client, model["id"], {"class_labels": [3]}, "retrain"))
    assert client.get(f"/v1/models/{model['id']}").json()["update_log_id"] is None  # detached, not forgotten
    event = _purge_event(client, db, job["id"], log_id)
    p = event["payload"]
    assert p["current_log"] is False
    assert p["steps_purged"] == len(held_class) and p["steps_remaining"] == recorded - len(held_class)
    emptied = [c for c in p["chunks"] if c["new_sha256"] is None]
    assert p["chunks_deleted"] == len(emptied) and all(c["new_size"] == 0 for c in emptied)
    assert set(_live_steps(db, log_id)).isdisjoint(held_class) and set(_live_steps(db, log_id, PURGED)) == held_class
    assert not _index_rows(db, log_id, train_ids(label=3))  # the erased class's rows go, the others' stay
    assert len(_index_rows(db, log_id)) == 2 * count_train(exclude_labels=[3])
    _assert_old_files_gone(db, event)
    _assert_files_match_the_index(db, log_id)


def test_a_failed_commit_loses_nothing_and_a_pass_stopped_after_its_commit_is_finished(client, db):
    """The purge in two sessions by hand: one rolled back, one committed without deleting the old
    files (a crash right after the commit); the next housekeeping pass deletes them and says so."""
    model, log_id = _logged_model(client, epochs=1, seed=13)
    store = get_artifact_store()
    with new_session() as s:  # two steps leave the log, as an amnesiac job's success does
        assert logs_repo.mark_subtracted(s, log_id, [0, 9]) == 2
        s.commit()
    before = {
        (r.kind, r.chunk_index): (r.artifact_key, r.sha256)
        for r in db.scalars(select(UpdateLogChunk).where(UpdateLogChunk.log_id == log_id))
    }

    def run(commit: bool) -> purge.LogPurge:
        with new_session() as s:
            log = s.get(UpdateLog, log_id)
            result = purge.purge_log(s, store, log, models_repo.get(s, log.model_id), [])
            s.commit() if commit else s.rollback()
            return result

    rolled_back = run(commit=False)
    assert rolled_back.residual_steps_removed == 2 and {c["index"] for c in rolled_back.chunks} == {0, 1}
    db.rollback()
    rows = list(db.scalars(select(UpdateLogChunk).where(UpdateLogChunk.log_id == log_id)))
    assert {(r.kind, r.chunk_index): (r.artifact_key, r.sha256) for r in rows} == before
    for key, sha in before.values():  # the old files are all there, intact
        assert hashlib.sha256(_file(key).read_bytes()).hexdigest() == sha

    committed = run(commit=True)
    assert committed.chunks == rolled_back.chunks  # the same rewrite: the same content-addressed files
    pending = _superseded(db, log_id)
    assert {sha for _key, sha, _size in pending} == {c["old_sha256"] for c in committed.chunks}
    assert all(_file(key).exists() for key, _sha, _size in pending)  # listed for deletion, not yet deleted

    purge_update_logs("test")  # what the worker and the periodic pass run
    assert not any(_file(key).exists() for key, _sha, _size in pending)
    _assert_files_match_the_index(db, log_id)
    events = client.get("/v1/audit-events", params={"model_id": model["id"], "action": purge.FILES_DELETED}).json()[
        "items"
    ]
    assert len(events) == 1 and events[0]["actor"] == "test"
    files = events[0]["payload"]["files"]
    assert sorted(f["sha256"] for f in files) == sorted(sha for _key, sha, _size in pending)
    assert all(f["file"] == "deleted" for f in files)
    assert events[0]["payload"]["bytes_deleted"] == sum(size for _key, _sha, size in pending)


def test_the_periodic_pass_finishes_a_purge_the_worker_never_ran(client, db):
    """An erasure that committed but whose worker stopped before the purge: the periodic pass finds it
    (no purge event yet) and does it."""
    model, log_id = _logged_model(client, epochs=1, seed=14)
    job = _succeeded(
        client,
        forget(
            client,
            model["id"],
            {"sample_ids": train_ids(n=2)},
            "finetune",
            {"epochs": 1},
            on_verification_failure="accept",
        ),
    )
    _purge_event(client, db, job["id"], log_id)
    assert uuid.UUID(job["id"]) not in purge.pending_jobs(db, limit=10_000)

    # its twin, committed the same way, whose purge never ran; and a step an amnesiac job consumed
    real = db.get(Job, uuid.UUID(job["id"]))
    twin_id = uuid7()
    with new_session() as s:
        s.add(Job(**{**{c.name: getattr(real, c.name) for c in Job.__table__.columns}, "id": twin_id}))
        s.flush()
        s.add(JobRequest(job_id=twin_id, forget_request_id=jobs_repo.request_ids_of(s, real.id)[0]))
        logs_repo.mark_subtracted(s, log_id, [5])
        s.commit()
    db.rollback()
    assert twin_id in purge.pending_jobs(db, limit=10_000)

    assert purge_update_logs("reconciler") >= 1  # what every reconcile pass runs
    db.rollback()
    assert twin_id not in purge.pending_jobs(db, limit=10_000)
    event = _purge_event(client, db, str(twin_id), log_id)
    assert event["actor"] == "reconciler" and event["payload"]["residual_steps_removed"] == 1
    assert event["payload"]["steps_purged"] == 0  # the erased samples' batches went in the first pass
    _assert_old_files_gone(db, event)
    _assert_files_match_the_index(db, log_id)
