"""Fault e: Postgres (a private cluster on its own port) restarted while the API serves and a job runs.

While it is down the API answers 503 problem+json quickly (never a 500, never a hang); once it is
back the API answers again without being restarted, and the running job's worker retries its state
writes (progress, the final transaction) instead of losing the job."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.faults.conftest import Stack
from tests.helpers import FAST_RECIPE, register_digits, wait_job

ARCH = {"architecture": "cnn_small", "config": {"channels": [4, 8], "hidden": 16}}
DOWN_S = 4.0


def test_postgres_restart_answers_503_then_recovers(private_redis, private_postgres, stack_dir, fault_results):
    t0 = time.monotonic()
    # A lease well above the outage: the job's own worker is expected to carry on, not be replaced.
    with Stack(stack_dir, private_postgres.url(), private_redis.url, UNLEARND_JOB_LEASE_SECONDS="60") as stack:
        stack.start_api()
        stack.start_beat()
        stack.start_worker()
        client = stack.client(timeout=15)
        try:
            dataset = register_digits(client)
            spec = {
                "name": f"pg-{uuid.uuid4().hex[:6]}",
                "dataset_id": dataset["id"],
                **ARCH,
                "recipe": {**FAST_RECIPE, "epochs": 12},
            }
            resp = client.post("/v1/models", json=spec)
            assert resp.status_code == 202, resp.text
            job_id, model_id = resp.json()["training_job_id"], resp.json()["id"]
            wait_for_progress(client, job_id)

            private_postgres.stop()
            down_at = time.monotonic()
            statuses: dict[int, int] = {}
            slowest = 0.0
            while time.monotonic() - down_at < DOWN_S:
                for method, path, body in (
                    ("GET", f"/v1/jobs/{job_id}", None),
                    ("GET", "/v1/models", None),
                    ("POST", "/v1/models", {**spec, "name": f"pg-{uuid.uuid4().hex[:6]}"}),
                    ("GET", "/readyz", None),
                ):
                    sent = time.monotonic()
                    r = client.request(method, path, json=body)
                    slowest = max(slowest, time.monotonic() - sent)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    assert r.status_code == 503, (path, r.status_code, r.text)
                    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
                    assert r.json()["type"] == "/problems/service-unavailable", r.text
                time.sleep(0.2)
            private_postgres.start()
            down_s = time.monotonic() - down_at

            # The API recovers by itself: a stale pooled connection may cost a 503 or two, no more.
            back_at = time.monotonic()
            after: list[int] = []
            while True:
                r = client.get(f"/v1/jobs/{job_id}")
                after.append(r.status_code)
                if r.status_code == 200:
                    break
                assert r.status_code == 503, r.text
                assert time.monotonic() - back_at < 15, after
                time.sleep(0.1)
            recover_s = time.monotonic() - back_at
            for path in ("/v1/models", "/readyz", f"/v1/models/{model_id}"):
                assert client.get(path).status_code == 200, path

            job = wait_job(client, job_id, timeout=90)
            assert job["state"] == "SUCCEEDED", job
            assert job["attempt"] == 1, job  # the same attempt carried on: the writes were retried
            from app.db import new_session

            new_session().get_bind().dispose()  # this test process's own pool holds pre-restart connections
            dup = stack.query("SELECT 1 FROM job_batches GROUP BY job_id, attempt, step HAVING count(*) > 1")
            assert dup == []
            assert stack.missing_files() == []
            # and the service takes new work as before
            spec2 = {**spec, "name": f"pg-{uuid.uuid4().hex[:6]}", "recipe": {**FAST_RECIPE, "epochs": 2}}
            r = client.post("/v1/models", json=spec2)
            assert r.status_code == 202, r.text
            assert wait_job(client, r.json()["training_job_id"], timeout=60)["state"] == "SUCCEEDED"
        except BaseException:
            for proc in stack.processes:
                print(f"--- {proc.name} ({proc.log_path}) ---\n{proc.log_tail(60)}")
            raise
    fault_results.append(
        {
            "fault": "postgres-restart",
            "injected": f"Postgres stopped (fast shutdown) for {down_s:.1f} s in the middle of a training job, "
            "API requests sent all along, then started again",
            "expected": "503 problem+json while down (not 500, not a hang); recovery without restarting the API; "
            "the worker retries its state writes",
            "outcome": f"{sum(statuses.values())} requests during the outage, all 503 problem+json "
            f"(slowest {slowest:.2f} s); the API answered 200 again {recover_s:.1f} s after the restart "
            f"({after.count(503)} 503 on stale connections); the job SUCCEEDED on attempt {job['attempt']}",
            "passed": True,
            "figures": {
                "postgres_down_s": round(down_s, 1),
                "requests_while_down": sum(statuses.values()),
                "answers_while_down": {str(k): v for k, v in statuses.items()},
                "slowest_answer_while_down_s": round(slowest, 2),
                "stale_connection_503s_after_restart": after.count(503),
                "api_recovery_s": round(recover_s, 2),
                "job_attempts": job["attempt"],
                "jobs": 2,
                "succeeded": 2,
                "total_s": round(time.monotonic() - t0, 1),
            },
        }
    )


def wait_for_progress(client: httpx.Client, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "RUNNING" and job["progress"]["fraction"] > 0.05:
            return
        assert job["state"] in ("QUEUED", "RUNNING"), job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got going")
