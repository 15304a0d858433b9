"""Fault d: the broker (a private Redis, no persistence) restarted during a burst of requests.

Every forget request the API accepted (202) must end SUCCEEDED: the messages Redis lost (queued,
delayed retries, unacked) are re-sent by the reconciler from Postgres, and the worker, beat and API
reconnect by themselves."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.faults.conftest import Stack, shared_database
from tests.helpers import FAST_RECIPE, forget, register_digits, train_ids, train_model, wait_job

ARCH = {"architecture": "cnn_small", "config": {"channels": [4, 8], "hidden": 16}}
RECIPE = {**FAST_RECIPE, "epochs": 2}
REQUESTS = 12
MODELS = 3


def test_redis_restart_during_a_burst_loses_nothing(private_redis, stack_dir, fault_results):
    t0 = time.monotonic()
    with shared_database() as url, Stack(stack_dir, url, private_redis.url) as stack:
        stack.start_api()
        stack.start_beat()
        stack.start_worker()
        client = stack.client(timeout=20)
        try:
            dataset = register_digits(client)
            models = [train_model(client, dataset["id"], **ARCH, recipe=RECIPE) for _ in range(MODELS)]
            ids = train_ids()
            answers: list[tuple[float, int, dict]] = []
            lock = threading.Lock()

            def submit(i: int) -> None:
                time.sleep(i * 0.25)  # a burst over ~3 s, Redis down in the middle of it
                sent = time.monotonic()
                resp = forget(
                    client,
                    models[i % MODELS]["id"],
                    {"sample_ids": ids[i * 3 : i * 3 + 3]},
                    method="finetune",
                    params={"epochs": 1},
                    on_verification_failure="accept",  # the broker's fault is tested, not the gate
                    key=f"burst-{i}",
                )
                with lock:
                    answers.append((time.monotonic() - sent, resp.status_code, resp.json()))

            with ThreadPoolExecutor(REQUESTS) as pool:
                futures = [pool.submit(submit, i) for i in range(REQUESTS)]
                time.sleep(0.8)
                private_redis.stop()
                down_at = time.monotonic()
                time.sleep(2.0)
                private_redis.start()
                down_s = time.monotonic() - down_at
                for f in futures:
                    f.result()
            accepted = [body for _, status, body in answers if status == 202]
            refused = [(status, body) for _, status, body in answers if status != 202]
            for status, body in refused:  # anything not accepted must say so properly
                assert status == 503 and body["type"] == "/problems/service-unavailable", (status, body)
            assert len(accepted) >= REQUESTS // 2, answers
            recovered_at = time.monotonic()
            job_ids = sorted({fr["jobs"][0]["id"] for fr in accepted})  # queued requests may be coalesced
            jobs = [wait_job(client, job_id, timeout=120) for job_id in job_ids]
            drain_s = time.monotonic() - recovered_at
            assert all(j["state"] == "SUCCEEDED" for j in jobs), [(j["id"], j["state"], j["error"]) for j in jobs]
            for m in models:  # the head moved linearly: one version per erasure job
                n = len({fr["jobs"][0]["id"] for fr in accepted if fr["model_id"] == m["id"]})
                assert client.get(f"/v1/models/{m['id']}").json()["head_version"] == 1 + n
            republished = stack.query(
                "SELECT count(*) AS n FROM jobs WHERE kind = 'unlearn' AND enqueued_at > created_at"
            )[0].n
            assert stack.orphan_files() == {"unreferenced_checkpoints": [], "staging": []}
        except BaseException:
            for proc in stack.processes:
                print(f"--- {proc.name} ({proc.log_path}) ---\n{proc.log_tail(60)}")
            raise
    fault_results.append(
        {
            "fault": "redis-restart",
            "injected": f"{REQUESTS} forget requests over ~3 s; the broker (Redis, no persistence) killed 0.8 s "
            f"in and restarted {down_s:.1f} s later, losing every message",
            "expected": "nothing accepted is lost; the jobs run once Redis is back",
            "outcome": f"{len(accepted)} accepted (202), {len(refused)} refused with 503; "
            f"all {len(jobs)} jobs serving them SUCCEEDED",
            "passed": True,
            "figures": {
                "requests": REQUESTS,
                "accepted": len(accepted),
                "refused_503": len(refused),
                "jobs": len(jobs),
                "succeeded": sum(j["state"] == "SUCCEEDED" for j in jobs),
                "attempts_total": sum(j["attempt"] for j in jobs),
                "jobs_republished_by_reconciler": republished,
                "redis_down_s": round(down_s, 1),
                "max_answer_s": round(max(a for a, _, _ in answers), 2),
                "drain_after_restart_s": round(drain_s, 1),
                "total_s": round(time.monotonic() - t0, 1),
            },
        }
    )
