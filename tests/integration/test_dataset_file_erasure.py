"""No residual copies, datasets: once an erasure succeeds, its rows leave the service's stored copy of
the dataset (a new content-addressed file, the old one deleted after the commit, each step audited),
and training, retraining and evaluation read the new file."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.datasets import file_erasure
from app.datasets import service as datasets
from app.datasets.tables import Dataset
from app.db import commit, new_session
from app.storage import get_artifact_store
from tests.helpers import audit_events, digits, forget, train_model, wait_for, wait_job, wait_request
from workers.housekeeping import erase_from_dataset_files

pytestmark = pytest.mark.integration

ROWS = 600
GPT2 = {"architecture": "gpt2", "config": {"n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 32}}
LM_RECIPE = {"optimizer": "adamw", "lr": 0.003, "epochs": 2, "batch_size": 8, "seed": 0}


def _arrays(prefix: str) -> dict[str, np.ndarray]:
    """Digits with IDs of their own and two pixels (always 0 in digits) that make every x row unique,
    here and across this module's datasets: a byte search for a row finds that row and no other."""
    d = digits()
    x = d["x"][:ROWS].copy()
    x[:, 0, 0] = (np.arange(ROWS) + 1) * 1e-3
    x[:, 0, 7] = 0.1 + uuid.uuid4().int % 10**6 * 1e-7  # this dataset's own
    ids = np.array([f"{prefix}-{i:04d}" for i in range(ROWS)])
    return {"ids": ids, "x": x, "y": d["y"][:ROWS], "split": d["split"][:ROWS]}


def _upload(client, name: str, data: bytes, filename: str) -> dict:
    resp = client.post("/v1/datasets", data={"name": name}, files={"file": (filename, data)})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _upload_npz(client, arrays: dict[str, np.ndarray]) -> dict:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return _upload(client, f"subjects-{uuid.uuid4().hex[:6]}", buf.getvalue(), "subjects.npz")


def _file(sha256: str, suffix: str) -> Path:
    return Path(get_artifact_store().root) / "datasets" / sha256[:2] / f"{sha256}{suffix}"


def _assert_nowhere_in_the_store(ids: list[str], x_rows: np.ndarray | None = None, texts: tuple[str, ...] = ()):
    """No file of the store's datasets area holds these sample IDs, x rows or texts: loaded, and as the
    raw bytes of its uncompressed content."""
    rows = {r.tobytes() for r in x_rows} if x_rows is not None else set()
    files = [p for p in (Path(get_artifact_store().root) / "datasets").rglob("*") if p.is_file()]
    assert files
    for path in files:
        raw = path.read_bytes()
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                assert not set(ids) & set(npz["ids"].tolist()), path
                assert not rows & {r.tobytes() for r in npz["x"]}, path
            with zipfile.ZipFile(path) as zf:
                members = [zf.read(name) for name in zf.namelist()]
        else:
            docs = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            assert not set(ids) & {d["id"] for d in docs}, path
            members = [raw]
        for member in members:
            assert not any(s.encode() in member or s.encode("utf-32-le") in member for s in ids), path
            assert not any(r in member for r in rows), path
            assert not any(t.encode() in member for t in texts), path


def wait_for_event(client, action: str, dataset_id: str, match=lambda e: True, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in audit_events(client, action=action) if e["entity_id"] == dataset_id and match(e)]
        if found:
            [event] = found
            return event
        assert time.monotonic() < deadline, f"no {action} event for dataset {dataset_id}"
        time.sleep(0.2)


def _erased_from_file(client, ds: dict, removed: int, suffix: str = ".npz") -> dict:
    """Waits for the rewrite and the deletion of the old file; checks the dataset row and both events."""
    now = wait_for(client, f"/v1/datasets/{ds['id']}", lambda d: d["sha256"] != ds["sha256"], timeout=60)
    assert now["rows_in_file"] == ds["rows_in_file"] - removed and now["num_rows"] == ds["num_rows"]
    rewritten = wait_for_event(
        client, file_erasure.REWRITTEN, ds["id"], lambda e: e["payload"]["old_sha256"] == ds["sha256"]
    )
    p = rewritten["payload"]
    assert (p["old_sha256"], p["new_sha256"]) == (ds["sha256"], now["sha256"])
    assert p["rows_removed"] == removed and p["rows_in_file"] == now["rows_in_file"]
    assert p["new_size_bytes"] == now["size_bytes"] == _file(now["sha256"], suffix).stat().st_size
    deleted = wait_for_event(
        client, file_erasure.FILE_DELETED, ds["id"], lambda e: e["payload"]["sha256"] == ds["sha256"]
    )
    assert deleted["payload"] == {"sha256": ds["sha256"], "file": "deleted"}
    assert rewritten["seq"] < deleted["seq"]
    assert not _file(ds["sha256"], suffix).exists()
    return now


def _no_ids_in(events: list[dict], ids: list[str]) -> None:
    text = json.dumps(events)
    assert not any(s in text for s in ids)  # counts and hashes, never sample IDs


def test_erased_samples_leave_the_stored_npz_and_training_reads_the_new_file(client):
    arrays = _arrays(f"subj-{uuid.uuid4().hex[:6]}")
    ds = _upload_npz(client, arrays)
    model = train_model(client, ds["id"])
    train_rows = np.flatnonzero(arrays["split"] == "train")
    erased = train_rows[[3, 50, 51, 200, len(train_rows) - 1]]
    ids, x_rows = arrays["ids"][erased].tolist(), arrays["x"][erased]
    with zipfile.ZipFile(_file(ds["sha256"], ".npz")) as zf:  # the search finds them before the erasure
        stored = b"".join(zf.read(name) for name in zf.namelist())
    assert all(s.encode("utf-32-le") in stored for s in ids) and all(r.tobytes() in stored for r in x_rows)

    done = wait_request(client, forget(client, model["id"], {"sample_ids": ids}).json()["id"])
    assert done["state"] == "SUCCEEDED", done
    _erased_from_file(client, ds, removed=len(ids))
    _assert_nowhere_in_the_store(ids, x_rows)
    _no_ids_in(audit_events(client, action=file_erasure.REWRITTEN), ids)

    # a model trained afterwards reads the new file: every training row but the erased ones
    again = train_model(client, ds["id"])
    counts = client.get(f"/v1/models/{again['id']}/versions/1").json()["metrics"]["counts"]
    assert counts["train"] == len(train_rows) - len(ids)

    # an erasure of the same samples on that model (they left the file) needs no data: retrain serves it,
    # an approximate method cannot and says so
    refused = wait_request(client, forget(client, again["id"], {"sample_ids": ids[:2]}, "gradient_ascent").json()["id"])
    assert refused["state"] == "FAILED", refused
    job = client.get(f"/v1/jobs/{refused['jobs'][0]['id']}").json()
    assert "already erased from the stored dataset" in job["error"]["detail"] and "retrain" in job["error"]["detail"]
    assert not any(s in job["error"]["detail"] for s in ids)
    served = wait_request(client, forget(client, again["id"], {"sample_ids": ids[:2]}).json()["id"])
    assert served["state"] == "SUCCEEDED", served
    counts = client.get(f"/v1/jobs/{served['jobs'][0]['id']}").json()["metrics"]["counts"]
    assert counts["forget"] == 0 and counts["retain"] == len(train_rows) - len(ids)


def test_a_class_erasure_leaves_the_file_and_a_later_retrain_finds_rows_by_id(client):
    arrays = _arrays(f"cls-{uuid.uuid4().hex[:6]}")
    ds = _upload_npz(client, arrays)
    model = train_model(client, ds["id"])
    train = arrays["split"] == "train"
    erased = np.flatnonzero(train & (arrays["y"] == 3))
    done = wait_request(client, forget(client, model["id"], {"class_labels": [3]}).json()["id"])
    assert done["state"] == "SUCCEEDED", done
    now = _erased_from_file(client, ds, removed=len(erased))
    _assert_nowhere_in_the_store(arrays["ids"][erased].tolist(), arrays["x"][erased])
    assert now["splits"] == ds["splits"]  # as registered

    # the rows after the erased ones moved up in the file: the next erasure still finds its samples
    fives = arrays["ids"][np.flatnonzero(train & (arrays["y"] == 5))[-2:]].tolist()
    again = wait_request(client, forget(client, model["id"], {"sample_ids": fives}).json()["id"])
    assert again["state"] == "SUCCEEDED", again
    counts = client.get(f"/v1/jobs/{again['jobs'][0]['id']}").json()["metrics"]["counts"]
    assert counts["forget"] == 2 and counts["retain"] == int(train.sum()) - len(erased) - 2
    _erased_from_file(client, now, removed=2)
    _assert_nowhere_in_the_store(fives, arrays["x"][np.isin(arrays["ids"], fives)])


def _jsonl(prefix: str) -> tuple[bytes, dict[str, str]]:
    rng = np.random.default_rng(0)
    words = ["river", "stone", "quiet", "green", "house", "light", "garden", "bread", "letter", "field"]
    docs = [
        {"id": f"{prefix}-doc-{i:02d}", "text": " ".join(rng.choice(words, 12)), "split": "train"} for i in range(16)
    ]
    docs += [
        {"id": f"{prefix}-held-{i:02d}", "text": " ".join(rng.choice(words, 12)), "split": "test"} for i in range(4)
    ]
    secrets = {
        f"{prefix}-secret-0": f"Patient {prefix} Jane Roe, card 5512 8831 0042 7719.",
        f"{prefix}-secret-1": f"Client {prefix} John Doe, card 4024 0071 3356 2210.",
    }
    docs += [{"id": sid, "text": text, "split": "train"} for sid, text in secrets.items()]
    return "".join(json.dumps(d) + "\n" for d in docs).encode(), secrets


def _train_lm(client, dataset_id: str) -> dict:
    spec = {"name": f"lm-{uuid.uuid4().hex[:6]}", "dataset_id": dataset_id, **GPT2, "recipe": LM_RECIPE}
    resp = client.post("/v1/models", json=spec)
    assert resp.status_code == 202, resp.text
    job = wait_job(client, resp.json()["training_job_id"], timeout=120)
    assert job["state"] == "SUCCEEDED", job
    return job


def test_erased_documents_leave_the_stored_jsonl(client):
    prefix = f"t{uuid.uuid4().hex[:6]}"
    data, secrets = _jsonl(prefix)
    ds = _upload(client, f"text-{prefix}", data, "docs.jsonl")
    model_id = _train_lm(client, ds["id"])["model_id"]
    ids = list(secrets)
    done = wait_request(client, forget(client, model_id, {"sample_ids": ids}).json()["id"], timeout=180)
    assert done["state"] == "SUCCEEDED", done
    now = _erased_from_file(client, ds, removed=2, suffix=".jsonl")
    _assert_nowhere_in_the_store(ids, texts=tuple(secrets.values()))
    kept = [line for line in data.split(b"\n") if line and not any(s.encode() in line for s in ids)]
    assert _file(now["sha256"], ".jsonl").read_bytes().split(b"\n")[:-1] == kept  # the rest byte for byte

    counts = _train_lm(client, ds["id"])["metrics"]["counts"]
    assert counts["train_documents"] == 16


def test_the_periodic_pass_deletes_an_old_file_a_crash_left_behind(client, db):
    """The rewrite committed without the deletion after it (a crash in between): the next pass finds the
    listed file and deletes it."""
    arrays = _arrays(f"crash-{uuid.uuid4().hex[:6]}")
    ds = _upload_npz(client, arrays)
    ids = arrays["ids"][np.flatnonzero(arrays["split"] == "train")[:3]].tolist()
    old = _file(ds["sha256"], ".npz")
    with new_session() as s:
        datasets.erase(s, uuid.UUID(ds["id"]), scope_type="sample_ids", values=ids, request_id=uuid.uuid4())
        result = file_erasure.rewrite(s, get_artifact_store(), dataset_id=uuid.UUID(ds["id"]), actor="test")
        assert result is not None and result.rows_removed == 3
        commit(s)
    row = db.get(Dataset, uuid.UUID(ds["id"]))
    assert row.superseded_artifact_key == f"datasets/{ds['sha256'][:2]}/{ds['sha256']}.npz" and old.exists()
    assert row.file_rewrite_due_at is None and row.rows_in_file == ROWS - 3

    erase_from_dataset_files("test")  # what the worker and the periodic reconcile pass run
    assert not old.exists()
    db.refresh(row)
    assert row.superseded_artifact_key is None
    deleted = wait_for_event(client, file_erasure.FILE_DELETED, ds["id"])
    assert deleted["payload"]["file"] == "deleted" and deleted["actor"] == "test"
    _assert_nowhere_in_the_store(ids, arrays["x"][np.isin(arrays["ids"], ids)])


def test_a_file_another_dataset_names_is_kept(client, db):
    """Identical uploads share one content-addressed file: erasing from one dataset leaves the other's."""
    data, secrets = _jsonl(f"s{uuid.uuid4().hex[:6]}")
    a = _upload(client, "shared-a", data, "docs.jsonl")
    b = _upload(client, "shared-b", data, "docs.jsonl")
    assert a["sha256"] == b["sha256"]
    with new_session() as s:
        datasets.erase(s, uuid.UUID(a["id"]), scope_type="sample_ids", values=list(secrets), request_id=uuid.uuid4())
        commit(s)
    assert erase_from_dataset_files("test") >= 1
    assert _file(a["sha256"], ".jsonl").read_bytes() == data  # b's file, untouched
    assert client.get(f"/v1/datasets/{b['id']}").json()["sha256"] == b["sha256"]
    now = client.get(f"/v1/datasets/{a['id']}").json()
    assert now["sha256"] != a["sha256"] and now["rows_in_file"] == a["num_rows"] - 2
    assert not any(t.encode() in _file(now["sha256"], ".jsonl").read_bytes() for t in secrets.values())
    deleted = wait_for_event(client, file_erasure.FILE_DELETED, a["id"])
    assert deleted["payload"]["file"].startswith("kept")
