"""A worker killed (-9) and started again with the same configured name: each start names itself anew
(workers/heartbeat.py), so the new one's heartbeat does not stand for the dead one, whose job is
taken back once its own heartbeat expires instead of at the end of its lease (118 s of 120 seen)."""

from __future__ import annotations

import os
import signal
import time
import uuid

from tests.faults.conftest import Stack, shared_database
from tests.helpers import FAST_RECIPE, audit_events, register_digits, wait_for, wait_job
from tests.processes import start_worker

ARCH = {"architecture": "cnn_small", "config": {"channels": [4, 8], "hidden": 16}}
LONG = {**FAST_RECIPE, "epochs": 25}  # still training when it is killed (as in test_worker_sigterm)
LEASE_S = 60  # far above a heartbeat's lifetime here: a reclaim within it came from the heartbeat
HEARTBEAT_S = 1


def test_a_restarted_worker_does_not_hide_its_predecessors_death(private_redis, stack_dir):
    from app.jobs.stuck import NO_HEARTBEAT
    from app.worker_status.store import TTL_INTERVALS

    overrides = {"UNLEARND_JOB_LEASE_SECONDS": str(LEASE_S), "UNLEARND_WORKER_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S)}
    with shared_database() as url, Stack(stack_dir, url, private_redis.url, **overrides) as stack:
        stack.start_api()
        stack.start_beat()
        first = start_worker(stack.process_env(), "gpu0", stack.tmp / "gpu0-first.log")
        stack.processes.append(first)
        client = stack.client()
        dataset = register_digits(client)
        spec = {"name": f"r-{uuid.uuid4().hex[:6]}", "dataset_id": dataset["id"], **ARCH, "recipe": LONG}
        job_id = client.post("/v1/models", json=spec).json()["training_job_id"]
        running = wait_for(
            client, f"/v1/jobs/{job_id}", lambda j: j["state"] == "RUNNING" and j["progress"]["step"] > 0, 60
        )
        assert running["worker"] == first.node_name

        os.killpg(first.proc.pid, signal.SIGKILL)  # the whole node: parent and pool child
        first.proc.wait(10)
        killed_at = time.monotonic()
        second = start_worker(stack.process_env(), "gpu0", stack.tmp / "gpu0-second.log")
        stack.processes.append(second)
        assert second.node_name != first.node_name and second.node_name.startswith("gpu0.")

        while not audit_events(client, job_id=job_id, action="job.requeued"):
            assert time.monotonic() - killed_at < LEASE_S, "taken back only by its lease, if at all"
            time.sleep(0.2)
        reclaimed_s = time.monotonic() - killed_at
        [event] = audit_events(client, job_id=job_id, action="job.requeued")
        assert event["payload"]["reason"] == NO_HEARTBEAT
        # a heartbeat's lifetime, the claim-age rule's as long, a reconcile pass: nowhere near the lease
        assert reclaimed_s < 2 * TTL_INTERVALS * HEARTBEAT_S + 10 < LEASE_S / 2

        done = wait_job(client, job_id, timeout=120)
        assert done["state"] == "SUCCEEDED" and done["attempt"] == 2 and done["worker"] == second.node_name
