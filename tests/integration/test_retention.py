"""No residual copies: an erasure retires the versions that still hold the erased samples, their
download answers 410, and their files are purged from the artifact store (each step audited)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.db.types import utcnow
from app.models import retention
from app.models.tables import ModelVersion
from app.storage import get_artifact_store
from tests.helpers import assert_problem, forget, register_digits, train_ids, train_model, wait_for, wait_request


def _file_of(db, model_id: str, version: int) -> Path:
    row = db.scalar(
        select(ModelVersion).where(ModelVersion.model_id == uuid.UUID(model_id), ModelVersion.version == version)
    )
    return get_artifact_store()._path(row.artifact_key)


def test_erasure_retires_and_purges_earlier_versions(client, db):
    model = train_model(client, register_digits(client)["id"])
    mid = model["id"]
    v1_file = _file_of(db, mid, 1)
    v1_bytes = client.get(f"/v1/models/{mid}/versions/1/checkpoint").content
    assert v1_file.is_file() and v1_file.read_bytes() == v1_bytes

    resp = forget(
        client, mid, {"sample_ids": train_ids(label=5, n=4)}, method="finetune", on_verification_failure="accept"
    )
    fr = wait_request(client, resp.json()["id"])
    assert fr["state"] == "SUCCEEDED", fr
    job_id = fr["jobs"][0]["id"]

    # the worker purges right after the erasure commits (grace 0 by default)
    v1 = wait_for(client, f"/v1/models/{mid}/versions/1", lambda v: v["purged_at"] is not None, timeout=30)
    assert v1["state"] == "RETIRED" and v1["retired_by_job_id"] == job_id and v1["retired_at"] <= v1["purged_at"]
    gone = assert_problem(client.get(f"/v1/models/{mid}/versions/1/checkpoint"), 410, "version-retired")
    assert gone["head_version"] == 2 and job_id in gone["detail"]
    assert not v1_file.exists()
    store_root = Path(get_artifact_store().root)
    assert not any(v1_bytes == p.read_bytes() for p in store_root.rglob("*.safetensors"))  # no copy elsewhere

    v2 = client.get(f"/v1/models/{mid}/versions/2/checkpoint")
    assert v2.status_code == 200 and hashlib.sha256(v2.content).hexdigest() == v2.headers["x-checkpoint-sha256"]

    events = client.get("/v1/audit-events", params={"model_id": mid, "page_size": 200}).json()["items"]
    retired = [e for e in events if e["action"] == "model.version_retired"]
    purged = [e for e in events if e["action"] == "model.version_purged"]
    assert [e["payload"]["version"] for e in retired] == [1] and retired[0]["job_id"] == job_id
    assert [e["payload"]["version"] for e in purged] == [1] and purged[0]["payload"]["file_deleted"] is True
    assert retired[0]["seq"] < purged[0]["seq"]


def test_purge_waits_for_the_grace_period(client, db):
    """purge_due honours purge_after: nothing before it, the file and only it after."""
    model = train_model(client, register_digits(client)["id"])
    store = get_artifact_store()
    kept = store.put_bytes(b"not a real checkpoint " + uuid.uuid4().bytes, kind="checkpoints", suffix=".safetensors")
    now = utcnow()
    row = ModelVersion(
        id=uuid.uuid4(),
        model_id=uuid.UUID(model["id"]),
        version=99,
        parent_version=1,
        artifact_key=kept.key,
        sha256=kept.sha256,
        size_bytes=kept.size,
        state=retention.RETIRED,
        created_by_job_id=None,
        metrics={},
        created_at=now,
        retired_at=now,
        purge_after=now + timedelta(hours=1),
    )
    db.add(row)
    db.commit()
    assert retention.purge_due(db, store, actor="test", now=now + timedelta(minutes=59)) == []
    db.commit()
    assert store.exists(kept.key)
    purged = retention.purge_due(db, store, actor="test", now=now + timedelta(hours=2))
    db.commit()
    assert row in purged and row.purged_at is not None
    assert not store.exists(kept.key)
    assert client.get(f"/v1/models/{model['id']}/versions/1/checkpoint").status_code == 200  # untouched


def test_the_sweep_deletes_old_checkpoint_files_no_version_names_and_nothing_else(client, db, stack_env):
    """What a worker killed between writing its checkpoint and the commit leaves behind."""
    import os
    import time

    store = get_artifact_store()
    orphan = store.put_bytes(
        b"written by a worker that died before its commit " + uuid.uuid4().bytes, kind="checkpoints"
    )
    fresh = store.put_bytes(b"written a moment ago by a job about to commit " + uuid.uuid4().bytes, kind="checkpoints")
    half = Path(stack_env["UNLEARND_ARTIFACT_DIR"]) / ".staging" / uuid.uuid4().hex
    half.write_bytes(b"half an upload")
    model = train_model(client, register_digits(client)["id"])  # a recorded version of its own
    recorded = db.scalars(select(ModelVersion).where(ModelVersion.model_id == uuid.UUID(model["id"]))).one()
    hour_ago = time.time() - 3600
    for path in (
        Path(stack_env["UNLEARND_ARTIFACT_DIR"]) / orphan.key,
        half,
        Path(stack_env["UNLEARND_ARTIFACT_DIR"]) / recorded.artifact_key,
    ):
        os.utime(path, (hour_ago, hour_ago))

    swept = retention.sweep_orphan_checkpoints(db, store, grace_s=600)

    assert orphan.key in swept and not store.exists(orphan.key) and not half.exists()
    assert store.exists(fresh.key)  # younger than the grace: maybe a commit on its way
    assert recorded.artifact_key not in swept and store.exists(recorded.artifact_key)
    store.delete(fresh.key)
