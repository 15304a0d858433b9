"""Fault b: graceful shutdown (SIGTERM) of a worker in the middle of a job.

Two ways it arrives: to the Celery main process only (``kill <pid>``, what Kubernetes and
``docker stop`` send to PID 1): a warm shutdown, the running job finishes, then the worker exits 0;
and to the whole process group (a terminal's Ctrl-\\, ``killpg``): the pool child dies with the job
half done, and the job is requeued by the reconciler and run by the next worker. Either way the job
is finished, never lost.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

from tests.faults.conftest import Stack, shared_database
from tests.helpers import FAST_RECIPE, register_digits, wait_job

ARCH = {"architecture": "cnn_small", "config": {"channels": [4, 8], "hidden": 16}}
# Long enough to be interrupted mid-training on a fast machine too. Progress after the first batch
# is written next at about a fifth of the training (0.15-0.2 on the runs seen), so with 10 epochs a
# write could jump from under 0.05 to over 0.5 and the test saw no RUNNING progress in its window.
LONG = {**FAST_RECIPE, "epochs": 25}


def _submit(client, dataset_id: str) -> str:
    spec = {"name": f"t-{uuid.uuid4().hex[:6]}", "dataset_id": dataset_id, **ARCH, "recipe": LONG}
    resp = client.post("/v1/models", json=spec)
    assert resp.status_code == 202, resp.text
    return resp.json()["training_job_id"]


def _wait_mid_training(stack: Stack, job_id: str, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = stack.query("SELECT state, progress_fraction FROM jobs WHERE id = :id", id=uuid.UUID(job_id))[0]
        if row.state == "RUNNING" and 0.02 < (row.progress_fraction or 0) < 0.6:
            return row.progress_fraction
        assert row.state in ("QUEUED", "RUNNING"), row
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never got going")


def test_sigterm_mid_job_finishes_or_requeues_it(private_redis, stack_dir, fault_results):
    t0 = time.monotonic()
    with shared_database() as url, Stack(stack_dir, url, private_redis.url) as stack:
        stack.start_api()
        stack.start_beat()
        client = stack.client()
        try:
            dataset = register_digits(client)

            # 1. SIGTERM to the main process: warm shutdown, the job finishes first.
            worker = stack.start_worker()
            job_a = _submit(client, dataset["id"])
            at_a = _wait_mid_training(stack, job_a)
            term_at = time.monotonic()
            os.kill(worker.proc.pid, signal.SIGTERM)
            assert worker.proc.wait(60) == 0, worker.log_tail()
            exit_s = time.monotonic() - term_at
            done_a = wait_job(client, job_a, timeout=5)
            assert done_a["state"] == "SUCCEEDED" and done_a["attempt"] == 1, done_a
            assert done_a["result_version"] == 1
            assert "Warm shutdown" in worker.log_path.read_text()

            # 2. SIGTERM to the whole process group: the child dies mid-job; the job is requeued.
            worker = stack.start_worker()
            job_b = _submit(client, dataset["id"])
            at_b = _wait_mid_training(stack, job_b)
            term_at = time.monotonic()
            os.killpg(worker.proc.pid, signal.SIGTERM)
            worker.proc.wait(60)
            row = stack.query("SELECT state, attempt FROM jobs WHERE id = :id", id=uuid.UUID(job_b))[0]
            stack.start_worker()
            done_b = wait_job(client, job_b, timeout=90)
            recovered_s = time.monotonic() - term_at
            assert done_b["state"] == "SUCCEEDED", done_b
            assert done_b["result_version"] == 1
            versions = stack.query("SELECT created_by_job_id, count(*) AS n FROM model_versions GROUP BY 1")
            assert all(v.n == 1 for v in versions) and len(versions) == 2
            dup = stack.query("SELECT 1 FROM job_batches GROUP BY job_id, attempt, step HAVING count(*) > 1")
            assert dup == []
            assert stack.orphan_files() == {"unreferenced_checkpoints": [], "staging": []}
        except BaseException:
            for proc in stack.processes:
                print(f"--- {proc.name} ({proc.log_path}) ---\n{proc.log_tail(60)}")
            raise
    finished_how = (
        "finished by the dying worker" if done_b["attempt"] == 1 else f"requeued, attempt {done_b['attempt']}"
    )
    fault_results.append(
        {
            "fault": "worker-sigterm",
            "injected": "SIGTERM mid-training (1) to the worker's main process, (2) to its whole process group",
            "expected": "the job is finished or requeued, never lost",
            "outcome": f"(1) warm shutdown: the job finished (attempt 1), the worker exited 0 after it; "
            f"(2) the pool child died mid-job (state then {row.state}): {finished_how}, SUCCEEDED once",
            "passed": True,
            "figures": {
                "jobs": 2,
                "succeeded": 2,
                "interrupted_at_progress": [round(at_a, 2), round(at_b, 2)],
                "warm_shutdown_exit_s": round(exit_s, 1),
                "attempts": [done_a["attempt"], done_b["attempt"]],
                "group_sigterm_to_succeeded_s": round(recovered_s, 1),
                "total_s": round(time.monotonic() - t0, 1),
            },
        }
    )
