"""Device classes: a model's jobs go to the queue of its device class, and a worker runs only the jobs
of the queues it consumes (docker-compose's worker-cpu consumes only the cpu one).

The session's worker consumes both job queues, so this test runs its own API and a cpu-only worker
on the session's database and Redis under a queue name of their own: the session's worker never
sees their messages.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import httpx
import pytest
import redis
from sqlalchemy import select

from app.db import commit
from app.db.types import utcnow
from app.jobs import service as jobs
from app.jobs.tables import Job
from app.queue import job_queue
from tests.conftest import _process_env
from tests.helpers import FAST_ARCH, FAST_RECIPE, bearer, wait_job
from tests.integration.test_reconciler import _age
from tests.processes import start_api, start_worker
from tests.services import free_port


@pytest.fixture
def cpu_only(stack_env, admin_key, tmp_path, monkeypatch):
    """(client, cpu-only worker, queue name): an API and a worker of the cpu queue alone, under a
    queue name of their own; this process's settings name that queue too (for the reconcile pass)."""
    from app.queue import celery_app
    from app.settings import get_settings

    queue = f"unlearnd-cpu-only-{uuid.uuid4().hex[:8]}"
    env = {**_process_env(stack_env), "UNLEARND_QUEUE_NAME": queue}
    worker = start_worker(env, "cpuonly", tmp_path / "worker.log", queues=[job_queue(queue, "cpu")])
    port = free_port()
    api = start_api(env, port, tmp_path / "api.log")
    monkeypatch.setenv("UNLEARND_QUEUE_NAME", queue)
    for cached in (get_settings, celery_app):
        cached.cache_clear()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=bearer(admin_key)) as client:
            yield client, worker, queue
    finally:
        api.stop()
        worker.stop()
        monkeypatch.setenv("UNLEARND_QUEUE_NAME", stack_env["UNLEARND_QUEUE_NAME"])
        for cached in (get_settings, celery_app):
            cached.cache_clear()
        redis.Redis.from_url(os.environ["UNLEARND_BROKER_URL"]).delete(*(job_queue(queue, c) for c in ("gpu", "cpu")))


def _register(client, dataset_id: str, device_class: str) -> dict:
    spec = {"name": f"dc-{uuid.uuid4().hex[:8]}", "dataset_id": dataset_id, **FAST_ARCH, "recipe": FAST_RECIPE}
    resp = client.post("/v1/models", json={**spec, "device_class": device_class})
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_a_cpu_worker_runs_cpu_jobs_and_leaves_gpu_jobs_queued(cpu_only, digits_dataset, db):
    client, worker, queue = cpu_only
    broker = redis.Redis.from_url(os.environ["UNLEARND_BROKER_URL"])
    gpu_model = _register(client, digits_dataset["id"], "gpu")  # sent first: in the broker all along
    cpu_model = _register(client, digits_dataset["id"], "cpu")
    assert gpu_model["device_class"] == "gpu" and cpu_model["device_class"] == "cpu"
    assert gpu_model["parameter_count"] == cpu_model["parameter_count"] == 3658  # cnn_small 8-16, hidden 32
    gpu_job = gpu_model["training_job_id"]
    try:
        done = wait_job(client, cpu_model["training_job_id"], timeout=120)
        assert done["state"] == "SUCCEEDED" and done["device_class"] == "cpu" and done["worker"] == worker.node_name

        # the gpu model's job waited in the gpu queue, which no worker consumes, beside an idle worker
        waiting = client.get(f"/v1/jobs/{gpu_job}").json()
        assert waiting["state"] == "QUEUED" and waiting["device_class"] == "gpu" and waiting["worker"] is None
        assert broker.llen(job_queue(queue, "gpu")) == 1 and broker.llen(job_queue(queue, "cpu")) == 0

        # the reconciler re-sends it to the gpu queue again, and the idle cpu worker does not count
        # towards its send cap (it could not have taken it)
        _age(db, gpu_job, enqueued_at=utcnow() - timedelta(minutes=5))
        report = jobs.reconcile(db)
        commit(db)
        assert report["republished"] >= 1 and broker.llen(job_queue(queue, "gpu")) == 2
        db.rollback()
        sends = db.execute(select(Job.unclaimed_sends).where(Job.id == uuid.UUID(gpu_job))).scalar_one()
        assert sends == 0
        assert client.get(f"/v1/jobs/{gpu_job}").json()["state"] == "QUEUED"
    finally:
        client.post(f"/v1/jobs/{gpu_job}/cancel")
    assert client.get(f"/v1/jobs/{gpu_job}").json()["state"] == "CANCELLED"
