"""Housekeeping beside a long job: beat's reconcile messages go to a queue of their own, served by a
housekeeping worker, so the only job worker being busy for minutes holds up neither stuck-job
detection nor purges. (On the job queue they waited behind the job: prefetch 1, one process.)"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from sqlalchemy import update

from tests.faults.conftest import Stack, shared_database
from tests.helpers import FAST_ARCH, FAST_RECIPE, audit_events, register_digits, wait_for

LONG = {**FAST_RECIPE, "epochs": 400}  # minutes of training: the worker is busy all through the test


def _train(client, dataset_id: str, recipe: dict) -> str:
    spec = {"name": f"hk-{uuid.uuid4().hex[:6]}", "dataset_id": dataset_id, **FAST_ARCH, "recipe": recipe}
    resp = client.post("/v1/models", json=spec)
    assert resp.status_code == 202, resp.text
    return resp.json()["training_job_id"]


def _state(stack: Stack, job_id: str):
    return stack.query(
        "SELECT state, attempt, unclaimed_sends, enqueued_at FROM jobs WHERE id = :id", id=uuid.UUID(job_id)
    )[0]


def test_housekeeping_runs_while_the_only_job_worker_is_busy(private_redis, stack_dir):
    from app.db import new_session
    from app.db.types import utcnow
    from app.jobs import service as jobs
    from app.jobs.stuck import LEASE_EXPIRED
    from app.jobs.tables import Job

    with shared_database() as url, Stack(stack_dir, url, private_redis.url) as stack:
        stack.start_api()
        stack.start_worker()
        stack.start_beat()  # with the housekeeping worker
        client = stack.client()
        dataset = register_digits(client)
        busy = _train(client, dataset["id"], LONG)
        wait_for(client, f"/v1/jobs/{busy}", lambda j: j["state"] == "RUNNING" and j["progress"]["step"] > 0, 60)

        # a job of another model, claimed by a worker that died at once (its lease already over)
        ghost = _train(client, dataset["id"], FAST_RECIPE)
        db = new_session()
        try:
            assert jobs.claim(db, uuid.UUID(ghost), worker="ghost@nowhere").outcome is jobs.Claim.RUN
            past = utcnow() - timedelta(seconds=1)
            db.execute(update(Job).where(Job.id == uuid.UUID(ghost)).values(lease_expires_at=past))
            db.commit()
        finally:
            db.close()
        expired_at = time.monotonic()

        # beat sends a reconcile every second; the housekeeping worker takes the ghost's job back
        deadline = expired_at + 20
        while _state(stack, ghost).state != "QUEUED":
            assert time.monotonic() < deadline, "no reconcile pass ran while the job worker was busy"
            time.sleep(0.2)
        requeued_s = time.monotonic() - expired_at
        [event] = audit_events(client, job_id=ghost, action="job.requeued")
        assert event["payload"]["reason"] == LEASE_EXPIRED

        # it is re-sent while it waits (QUEUED_AFTER 2 s), but with the only worker busy no send is
        # charged to it: it must not fail as "Never started" behind a long job of another model
        first_sent = _state(stack, ghost).enqueued_at
        deadline = time.monotonic() + 20
        while _state(stack, ghost).enqueued_at == first_sent:
            assert time.monotonic() < deadline, "the requeued job was never re-sent"
            time.sleep(0.2)
        waiting = _state(stack, ghost)
        assert waiting.state == "QUEUED" and waiting.unclaimed_sends == 0, waiting
        assert _state(stack, busy).state == "RUNNING"  # all of the above happened beside the long job
        assert requeued_s < 20

        assert client.post(f"/v1/jobs/{busy}/cancel").status_code == 202
        done = wait_for(client, f"/v1/jobs/{ghost}", lambda j: j["state"] in ("SUCCEEDED", "FAILED"), 120)
        assert done["state"] == "SUCCEEDED" and done["attempt"] == 2, done
