"""The reconciler: jobs whose message never reached the broker, and jobs whose worker vanished."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from pydantic import TypeAdapter
from sqlalchemy import update

from app.db import commit
from app.db.types import utcnow
from app.forget_requests import service as requests
from app.forget_requests.schemas import ForgetRequestCreate
from app.jobs import service as jobs
from app.jobs import stuck
from app.jobs.tables import Job
from app.queue import job_queue
from app.settings import get_settings
from tests.helpers import wait_job, wait_request


def _accept_without_publishing(db, model_id: str, labels: list[int]) -> dict:
    """Accept a request the way the API does, but commit without the after-commit publish: as if
    the broker lost the message."""
    body = TypeAdapter(ForgetRequestCreate).validate_python(
        {
            "request_id": f"lost-{uuid.uuid4().hex}",
            "model_id": model_id,
            "scope": {"class_labels": labels},
            "method": "finetune",
            "params": {"epochs": 1},
            "on_verification_failure": "accept",
        }
    )
    answer = requests.submit(db, body, idempotency_key=None, tenant_id="default", actor="test")
    db.commit()  # plain commit: the on_commit publish callbacks are dropped
    db.info.clear()
    return answer.body


def _age(db, job_id: str, **columns) -> None:
    db.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(**columns))
    db.commit()


def test_a_queued_job_whose_message_was_lost_is_republished(client, model, db):
    fr = _accept_without_publishing(db, model["id"], [8])
    job_id = fr["jobs"][0]["id"]
    _age(db, job_id, enqueued_at=utcnow() - timedelta(minutes=5))
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "QUEUED"

    report = jobs.reconcile(db)
    commit(db)  # publishes what the reconciler re-sent
    assert report["republished"] >= 1
    assert wait_request(client, fr["id"])["state"] == "SUCCEEDED"


def test_a_job_whose_worker_vanished_is_requeued_and_runs_again(client, model, db):
    fr = _accept_without_publishing(db, model["id"], [9])
    job_id = uuid.UUID(fr["jobs"][0]["id"])
    assert jobs.claim(db, job_id, worker="ghost").outcome is jobs.Claim.RUN  # a worker took it ... and died
    db.commit()
    _age(db, str(job_id), lease_expires_at=utcnow() - timedelta(seconds=1))

    report = jobs.reconcile(db)
    commit(db)
    assert report["requeued"] == 1
    done = wait_job(client, str(job_id))
    assert done["state"] == "SUCCEEDED" and done["attempt"] == 2 and done["worker"] != "ghost"
    events = client.get("/v1/audit-events", params={"job_id": str(job_id)}).json()["items"]
    requeued = [e for e in events if e["action"] == "job.requeued"]
    assert len(requeued) == 1 and requeued[0]["payload"]["reason"] == "worker lost: lease expired"
    assert [e["action"] for e in events].count("job.running") == 2


def test_a_job_past_the_attempt_cap_fails_with_the_reason(client, model, db):
    fr = _accept_without_publishing(db, model["id"], [0])
    job_id = uuid.UUID(fr["jobs"][0]["id"])
    cap = get_settings().job_max_attempts
    _age(db, str(job_id), attempt=cap - 1)
    assert jobs.claim(db, job_id, worker="ghost").outcome is jobs.Claim.RUN
    db.commit()
    _age(db, str(job_id), lease_expires_at=utcnow() - timedelta(seconds=1))

    report = jobs.reconcile(db)
    commit(db)
    assert report["failed"] == 1
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "FAILED" and job["attempt"] == cap
    assert job["error"]["title"] == "Attempt cap reached" and str(cap) in job["error"]["detail"]


def test_a_job_no_live_worker_ever_starts_fails_at_the_send_cap(client, model, db):
    """A task that fails before its claim leaves the job QUEUED: re-sent while the model is idle and
    workers are alive, it fails at the cap with the reason instead of being re-sent forever."""
    from app.settings import get_settings

    cap = get_settings().job_max_unclaimed_sends
    fr = _accept_without_publishing(db, model["id"], [7])
    job_id = fr["jobs"][0]["id"]
    _age(db, job_id, enqueued_at=utcnow() - timedelta(minutes=5), unclaimed_sends=cap - 1)
    deadline = time.monotonic() + 60  # a send counts only while a worker of its queue is idle to take it
    while job_queue(get_settings().queue_name, "cpu") not in stuck.idle_queues():
        assert time.monotonic() < deadline, "the test worker never became idle"
        time.sleep(0.2)

    report = jobs.reconcile(db)
    commit(db)
    assert report["failed"] >= 1 and report["republished"] == 0
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "FAILED" and job["error"]["title"] == "Never started", job
    assert f"{cap} times" in job["error"]["detail"]
    assert client.get(f"/v1/forget-requests/{fr['id']}").json()["state"] == "FAILED"
