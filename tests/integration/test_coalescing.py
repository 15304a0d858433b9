"""Requests for one model that arrive while a job runs are served by one run at the next start, and
each keeps its own record, audit events and certificate."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from tests.helpers import (
    assert_problem,
    forget,
    register_digits,
    train_ids,
    train_model,
    wait_for,
    wait_job,
    wait_request,
)

SLOW = {"epochs": 40}  # a shared job that runs for seconds
QUICK = {"epochs": 1}
# The job the requests queue behind: far longer than any submit on a busy machine, and cancelled
# once they are in (its own outcome is not what these tests look at).
BLOCKER = {"epochs": 100, "batch_size": 8}


@pytest.fixture(scope="module")
def own_model(client) -> dict:
    """A model of this module only: another module's jobs must not run between ours."""
    return train_model(client, register_digits(client)["id"])


def _release(client, blocker: dict) -> None:
    """Cancel the blocking job: the requests queued behind it start."""
    job_id = blocker["jobs"][0]["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    wait_job(client, job_id)


def test_requests_queued_behind_a_running_job_share_one_run(client, own_model):
    ids = train_ids(n=7)
    blocker = forget(
        client, own_model["id"], {"sample_ids": ids[:1]}, "finetune", BLOCKER, on_verification_failure="accept"
    )
    assert blocker.status_code == 202, blocker.text
    wait_job(client, blocker.json()["jobs"][0]["id"], states={"RUNNING"}, timeout=60)

    answers = [
        forget(client, own_model["id"], {"sample_ids": [i]}, "finetune", QUICK, on_verification_failure="accept").json()
        for i in ids[1:]
    ]
    shared = {a["jobs"][0]["id"] for a in answers}
    assert len(shared) == 1, answers  # the first queued a job; the other five joined it
    assert answers[-1]["jobs"][0]["requests_served"] == 6

    # one of them changes its mind while the shared job still waits: it alone leaves
    left = client.post(f"/v1/forget-requests/{answers[0]['id']}/cancel")
    assert left.status_code == 202 and left.json()["state"] == "CANCELLED", left.text
    _release(client, blocker.json())

    finals = [wait_request(client, a["id"]) for a in answers[1:]]
    assert {f["state"] for f in finals} == {"SUCCEEDED"}
    [job_id] = shared
    job = wait_job(client, job_id)
    assert job["state"] == "SUCCEEDED" and len(job["forget_request_ids"]) == 5
    assert {f["jobs"][0]["result_version"] for f in finals} == {job["result_version"]}
    assert client.get(f"/v1/forget-requests/{answers[0]['id']}").json()["state"] == "CANCELLED"

    for fr in finals:  # each request: its own certificate and audit trail, anchored to the shared job
        cert = client.get(f"/v1/forget-requests/{fr['id']}/certificate")
        assert cert.status_code == 200, cert.text
        assert cert.json()["certificate"]["result_version"]["number"] == job["result_version"]
        events = client.get("/v1/audit-events", params={"forget_request_id": fr["id"]}).json()["items"]
        actions = [e["action"] for e in events]
        assert "job.request_joined" in actions or "job.queued" in actions
        assert actions.count("job.succeeded") == 1 and {e["job_id"] for e in events} - {None} == {job_id}
    cancelled = client.get("/v1/audit-events", params={"forget_request_id": answers[0]["id"]}).json()["items"]
    assert cancelled[-1]["action"] == "job.request_left"


def test_a_request_cannot_leave_a_shared_job_that_started(client, own_model):
    ids = train_ids(n=3)
    blocker = forget(
        client, own_model["id"], {"sample_ids": ids[:1]}, "finetune", BLOCKER, on_verification_failure="accept"
    )
    wait_job(client, blocker.json()["jobs"][0]["id"], states={"RUNNING"}, timeout=60)
    a, b = (
        forget(client, own_model["id"], {"sample_ids": [i]}, "finetune", SLOW, on_verification_failure="accept").json()
        for i in ids[1:]
    )
    # (the shared job is slow too, so the cancel below most likely finds it RUNNING)
    assert a["jobs"][0]["id"] == b["jobs"][0]["id"]
    _release(client, blocker.json())
    shared = a["jobs"][0]["id"]
    wait_job(client, shared, states={"RUNNING", "VERIFYING", "SUCCEEDED"}, timeout=120)
    state = client.get(f"/v1/jobs/{shared}").json()["state"]
    if state == "RUNNING":  # its inputs are fixed now: leaving is refused, the job goes on
        assert_problem(client.post(f"/v1/forget-requests/{a['id']}/cancel"), 409, "job-not-cancellable")
    assert wait_request(client, a["id"])["state"] == "SUCCEEDED"
    wait_for(client, f"/v1/forget-requests/{b['id']}", lambda r: r["state"] == "SUCCEEDED", 120)


def test_concurrent_requests_behind_a_running_job_queue_one_job_between_them(api_url, client, own_model):
    """Twelve submits at once find no job to join: one queues a job under the model's queue lock, the
    other eleven wait for its commit and join it (none waits for another joiner)."""
    ids = train_ids(n=13)
    blocker = forget(
        client, own_model["id"], {"sample_ids": ids[:1]}, "finetune", BLOCKER, on_verification_failure="accept"
    ).json()
    wait_job(client, blocker["jobs"][0]["id"], states={"RUNNING"}, timeout=60)

    def post(i: int) -> httpx.Response:
        with httpx.Client(base_url=api_url, timeout=60, headers=client.headers) as c:
            return forget(
                c, own_model["id"], {"sample_ids": [ids[i]]}, "finetune", QUICK, on_verification_failure="accept"
            )

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, range(1, 13)))
    assert [a.status_code for a in answers] == [202] * 12, [a.text for a in answers]
    # the blocker still runs, so nothing was claimed while they were submitted
    assert client.get(f"/v1/jobs/{blocker['jobs'][0]['id']}").json()["state"] == "RUNNING"
    _release(client, blocker)
    shared = {a.json()["jobs"][0]["id"] for a in answers}
    assert len(shared) == 1, answers
    job = wait_job(client, shared.pop())
    assert job["state"] == "SUCCEEDED" and len(job["forget_request_ids"]) == 12


def test_a_job_whose_claim_is_under_way_is_passed_over_not_waited_for(api_url, client, own_model, db):
    """A worker's claim locks the QUEUED job's row until it commits, and the worker runs at a lower
    CPU priority than the API: a submit that waited for that commit held an API thread for it. It
    queues a job of its own instead (the claimed job will not be QUEUED any more)."""
    ids = train_ids(n=3)
    blocker = forget(
        client, own_model["id"], {"sample_ids": ids[:1]}, "finetune", BLOCKER, on_verification_failure="accept"
    ).json()
    wait_job(client, blocker["jobs"][0]["id"], states={"RUNNING"}, timeout=60)
    queued = forget(
        client, own_model["id"], {"sample_ids": [ids[1]]}, "finetune", QUICK, on_verification_failure="accept"
    ).json()["jobs"][0]["id"]

    db.execute(text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": queued})  # as a claim does
    try:
        # were the submit to wait for the lock, it would answer only after the rollback below
        with httpx.Client(base_url=api_url, timeout=20, headers=client.headers) as c:
            answer = forget(
                c, own_model["id"], {"sample_ids": [ids[2]]}, "finetune", QUICK, on_verification_failure="accept"
            )
    finally:
        db.rollback()
    _release(client, blocker)
    assert answer.status_code == 202, answer.text
    own_job = answer.json()["jobs"][0]["id"]
    assert own_job != queued
    assert [wait_job(client, j)["state"] for j in (queued, own_job)] == ["SUCCEEDED", "SUCCEEDED"]
