"""The embedded default, as a new user runs it: one command, no Postgres, no Redis; the demo model
trains, a forget request runs on the in-process worker, the checkpoint downloads, the audit trail fills."""

from __future__ import annotations

import hashlib
import os
import re
import sys

import httpx
import pytest

from tests.helpers import wait_for, wait_request
from tests.processes import Process
from tests.services import free_port


@pytest.fixture
def embedded(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARND_")}
    env.update(UNLEARND_PORT=str(port), PYTHONUNBUFFERED="1", UNLEARND_RECONCILE_INTERVAL_S="2")
    # run from an empty directory, as from a fresh checkout: var/ (SQLite + artifacts) is created there
    proc = Process(
        "embedded", [sys.executable, "-m", "app.cli", "embedded"], env, tmp_path / "embedded.log", cwd=tmp_path
    )
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90)
        yield f"http://127.0.0.1:{port}", tmp_path, proc
    finally:
        proc.stop()


def test_embedded_mode_end_to_end(embedded):
    url, workdir, proc = embedded
    assert (workdir / "var" / "unlearnd.db").exists()
    # the banner prints an API key to use; without one the API answers 401
    key = re.search(r"export UNLEARND_KEY=(unl_\S+)", proc.log_path.read_text()).group(1)
    assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 401
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        ready = client.get("/readyz").json()
        assert ready["checks"] == {"database": "ok", "broker": "ok"}
        demo = wait_for(client, "/v1/models", lambda b: b["items"] and b["items"][0]["state"] == "READY", 120)
        model = demo["items"][0]
        assert model["name"] == "digits-cnn" and model["head_version"] == 1
        assert model["id"] in proc.log_path.read_text()  # the banner told the user which id to use
        # the one process serves the API and runs the jobs: it keeps its normal priority (an idle-priority
        # API made `make run` unusable on a busy machine)
        assert os.sched_getscheduler(proc.proc.pid) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, proc.proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)

        resp = client.post(
            "/v1/forget-requests",
            headers={"Idempotency-Key": "demo-1"},
            json={"request_id": "demo-1", "model_id": model["id"], "scope": {"class_labels": [3]}, "method": "retrain"},
        )
        assert resp.status_code == 202, resp.text
        fr = wait_request(client, resp.json()["id"])
        assert fr["state"] == "SUCCEEDED", fr
        metrics = fr["jobs"][0]["metrics"]
        assert metrics["forget_class_test_accuracy"] <= 0.05 and metrics["test_accuracy"] >= 0.9

        ckpt = client.get(f"/v1/models/{model['id']}/versions/2/checkpoint")
        assert ckpt.headers["x-checkpoint-sha256"] == hashlib.sha256(ckpt.content).hexdigest()
        actions = [e["action"] for e in client.get("/v1/audit-events", params={"page_size": 500}).json()["items"]]
        assert actions[:2] == ["dataset.registered", "model.registered"]
        assert {"job.succeeded", "model.version_created", "checkpoint.downloaded"} <= set(actions)
