"""Fault c: the artifact store fails a write (a full disk, simulated in the worker only: see
diskfull/sitecustomize.py). The job fails cleanly with a problem that says why, no version row is
written (none points to a missing file), nothing is left half-written, and once the disk has room
again the same worker runs the next job without a restart."""

from __future__ import annotations

import time
import uuid

from tests.faults.conftest import Stack, shared_database
from tests.helpers import FAST_RECIPE, forget, register_digits, train_ids, train_model, wait_job
from tests.processes import ROOT

ARCH = {"architecture": "cnn_small", "config": {"channels": [4, 8], "hidden": 16}}
RECIPE = {**FAST_RECIPE, "epochs": 2}


def test_artifact_store_write_failure_fails_the_job_cleanly(private_redis, stack_dir, fault_results):
    t0 = time.monotonic()
    flag = stack_dir / "disk-full"
    with shared_database() as url, Stack(stack_dir, url, private_redis.url) as stack:
        stack.start_api()
        stack.start_beat()
        pythonpath = f"{ROOT / 'tests' / 'faults' / 'diskfull'}:{ROOT}"
        stack.start_worker(PYTHONPATH=pythonpath, UNLEARND_FAULT_DISK_FULL_FLAG=str(flag))
        client = stack.client()
        try:
            dataset = register_digits(client)
            model = train_model(client, dataset["id"], **ARCH, recipe=RECIPE)
            assert model["head_version"] == 1

            flag.touch()  # the disk is full from now on
            full_at = time.monotonic()
            fr = forget(
                client,
                model["id"],
                {"sample_ids": train_ids(n=5)},
                method="finetune",
                params={"epochs": 1},
                on_verification_failure="accept",
            )
            assert fr.status_code == 202, fr.text
            unlearn = wait_job(client, fr.json()["jobs"][0]["id"], timeout=60)
            spec = {"name": f"full-{uuid.uuid4().hex[:6]}", "dataset_id": dataset["id"], **ARCH, "recipe": RECIPE}
            resp = client.post("/v1/models", json=spec)
            assert resp.status_code == 202, resp.text
            train = wait_job(client, resp.json()["training_job_id"], timeout=60)
            full_s = time.monotonic() - full_at

            for job in (unlearn, train):
                assert job["state"] == "FAILED", job
                assert job["attempt"] == 1, job  # failed once, cleanly: not retried into the cap
                error = job["error"]
                assert error["type"] == "/problems/artifact-store-write-failed", error
                assert "No space left on device" in error["detail"], error
            assert client.get(f"/v1/models/{model['id']}").json()["head_version"] == 1
            versions = client.get(f"/v1/models/{model['id']}/versions").json()["items"]
            assert [v["version"] for v in versions] == [1] and versions[0]["state"] == "ACTIVE"
            assert client.get(f"/v1/models/{resp.json()['id']}").json()["state"] == "FAILED"
            assert (
                stack.query(
                    "SELECT count(*) AS n FROM model_versions WHERE created_by_job_id IN (:a, :b)",
                    a=uuid.UUID(unlearn["id"]),
                    b=uuid.UUID(train["id"]),
                )[0].n
                == 0
            )
            assert stack.missing_files() == []
            assert stack.orphan_files() == {"unreferenced_checkpoints": [], "staging": []}
            # the erased samples were not tombstoned: the erasure is still owed
            assert client.get(f"/v1/forget-requests/{fr.json()['id']}").json()["state"] == "FAILED"

            flag.unlink()  # room again: the same worker, no restart
            again = forget(
                client,
                model["id"],
                {"sample_ids": train_ids(n=5)},
                method="finetune",
                params={"epochs": 1},
                on_verification_failure="accept",
            )
            assert again.status_code == 202, again.text
            done = wait_job(client, again.json()["jobs"][0]["id"], timeout=60)
            assert done["state"] == "SUCCEEDED" and done["result_version"] == 2, done
            assert stack.missing_files() == []
        except BaseException:
            for proc in stack.processes:
                print(f"--- {proc.name} ({proc.log_path}) ---\n{proc.log_tail(60)}")
            raise
    fault_results.append(
        {
            "fault": "artifact-disk-full",
            "injected": "every artifact-store write fails with ENOSPC after 512 bytes (worker only), "
            "during an unlearn job and a train job; then the disk has room again",
            "expected": "the jobs fail cleanly with the reason; no version row points to a missing file; "
            "nothing half-written is left; the next job succeeds without a restart",
            "outcome": "both jobs FAILED on attempt 1 with /problems/artifact-store-write-failed "
            "(No space left on device); head stayed at v1, 0 version rows, 0 staging leftovers; "
            "the retried erasure SUCCEEDED as v2",
            "passed": True,
            "figures": {
                "jobs": 3,
                "failed_cleanly": 2,
                "attempts_of_failed_jobs": 2,
                "succeeded_after_recovery": 1,
                "disk_full_phase_s": round(full_s, 1),
                "total_s": round(time.monotonic() - t0, 1),
            },
        }
    )
