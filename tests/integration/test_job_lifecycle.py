"""Cancelling (queued and running), a job that fails, and one job at a time per model."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import assert_problem, forget, register_digits, train_model, wait_for, wait_job, wait_request
from tests.processes import start_worker

LONG_FINETUNE = {"epochs": 100, "batch_size": 8}  # ~18,000 batches: minutes, unless cancelled


def _running(client, job_id: str) -> dict:
    return wait_for(
        client, f"/v1/jobs/{job_id}", lambda j: j["state"] == "RUNNING" and j["progress"]["step"] > 0, timeout=60
    )


def test_cancel_running_and_queued_jobs(client, model):
    versions_before = client.get(f"/v1/models/{model['id']}/versions").json()["items"]
    long_job = forget(
        client, model["id"], {"class_labels": [1]}, "finetune", LONG_FINETUNE, on_verification_failure="accept"
    ).json()
    waiting = forget(
        client, model["id"], {"class_labels": [2]}, "finetune", {"epochs": 1}, on_verification_failure="accept"
    ).json()
    running = _running(client, long_job["jobs"][0]["id"])
    assert running["progress"]["total_steps"] > running["progress"]["step"]

    # the second job waits for the model: cancelled while QUEUED, it ends at once
    queued = client.get(f"/v1/jobs/{waiting['jobs'][0]['id']}").json()
    assert queued["state"] == "QUEUED"
    resp = client.post(f"/v1/forget-requests/{waiting['id']}/cancel")
    assert resp.status_code == 202 and resp.json()["state"] == "CANCELLED"

    # the running one stops at its next batch check
    resp = client.post(f"/v1/jobs/{running['id']}/cancel")
    assert resp.status_code == 202 and resp.json()["state"] in ("CANCELLING", "CANCELLED")
    done = wait_job(client, running["id"], timeout=30)
    assert done["state"] == "CANCELLED" and done["result_version"] is None
    assert done["progress"]["step"] < done["progress"]["total_steps"]
    assert wait_request(client, long_job["id"])["state"] == "CANCELLED"
    assert client.get(f"/v1/models/{model['id']}/versions").json()["items"] == versions_before

    actions = [e["action"] for e in client.get("/v1/audit-events", params={"job_id": running["id"]}).json()["items"]]
    assert actions == ["job.queued", "job.running", "job.cancelling", "job.cancelled"]
    # finished jobs cannot be cancelled
    assert_problem(client.post(f"/v1/jobs/{running['id']}/cancel"), 409, "job-not-cancellable")
    assert_problem(client.post(f"/v1/forget-requests/{waiting['id']}/cancel"), 409, "job-not-cancellable")


def test_a_job_whose_checkpoint_was_corrupted_fails_cleanly(client, digits_dataset, db):
    from app.models.repository import get_version
    from app.settings import get_settings

    model = train_model(client, digits_dataset["id"])
    version = get_version(db, model["id"], 1)
    path = Path(get_settings().artifact_dir) / version.artifact_key
    path.write_bytes(b"\0" * path.stat().st_size)  # flipped bits on disk: same size, other bytes

    fr = wait_request(
        client,
        forget(
            client, model["id"], {"class_labels": [4]}, "finetune", {"epochs": 1}, on_verification_failure="accept"
        ).json()["id"],
    )
    job = fr["jobs"][0]
    assert fr["state"] == job["state"] == "FAILED"
    assert job["error"]["title"] == "Integrity check failed" and job["error"]["type"] == "/problems/job-failed"
    assert "sha256" in job["error"]["detail"]
    assert job["result_version"] is None and job["finished_at"]
    assert [v["version"] for v in client.get(f"/v1/models/{model['id']}/versions").json()["items"]] == [1]
    assert client.get(f"/v1/models/{model['id']}").json()["head_version"] == 1
    failed = client.get("/v1/audit-events", params={"job_id": job["id"], "action": "job.failed"}).json()["items"]
    assert failed[0]["payload"]["error_type"] == "/problems/job-failed"


@pytest.fixture
def second_worker(stack_env, tmp_path):
    from tests.conftest import _process_env

    proc = start_worker(_process_env(stack_env), "second", tmp_path / "worker2.log")
    yield proc
    proc.stop()


def test_jobs_for_one_model_run_one_at_a_time(client, second_worker):
    model = train_model(client, register_digits(client)["id"])
    # different params, so the queued ones are not coalesced into one job (tests/.../test_coalescing.py)
    ids = [
        forget(
            client,
            model["id"],
            {"class_labels": [c]},
            "finetune",
            {"epochs": 2, "seed": c},
            on_verification_failure="accept",
        ).json()["id"]
        for c in (1, 2, 3)
    ]
    jobs = [wait_request(client, i)["jobs"][0] for i in ids]
    assert all(j["state"] == "SUCCEEDED" for j in jobs), jobs
    jobs.sort(key=lambda j: j["started_at"])
    # each started from the version the previous one produced, and none overlapped another
    assert [j["source_version"] for j in jobs] == [1, 2, 3]
    assert [j["result_version"] for j in jobs] == [2, 3, 4]
    spans = [(datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"])) for j in jobs]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans
