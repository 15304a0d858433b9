"""Operations: /metrics against the database, worker heartbeats, the stuck-job detector, and the
JSON logs of the API and the worker (the test stack runs with UNLEARND_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.db import commit
from app.db.types import utcnow
from app.jobs import service as jobs
from app.queue import housekeeping_queue, job_queue, job_queues
from app.settings import get_settings
from tests.helpers import forget, train_ids, train_model, wait_for, wait_job, wait_request
from tests.integration.test_reconciler import _accept_without_publishing, _age

LONG_FINETUNE = {"epochs": 100, "batch_size": 8}  # minutes, unless cancelled
QUICK = {"epochs": 1}


def scrape(api_url: str) -> list:
    """Every sample of /metrics, fetched without an API key (the endpoint is open to the scraper)."""
    resp = httpx.get(f"{api_url}/metrics", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(resp.text) for s in family.samples]


def value(samples: list, name: str, **labels: str) -> float:
    """The sum over the series of ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def db_count(db, where: str) -> int:
    db.rollback()  # a fresh snapshot
    return db.execute(text(f"SELECT count(*) FROM jobs WHERE {where}")).scalar_one()


def _worker_running(client, job_id: str) -> dict:
    def names_job(body: dict) -> bool:
        return any((w["current_job"] or {}).get("id") == job_id for w in body["items"])

    return next(w for w in wait_for(client, "/v1/workers", names_job, timeout=15)["items"] if w["current_job"])


def test_while_a_job_runs_metrics_match_the_database_and_the_worker_names_its_job(client, api_url, model, db):
    settings = get_settings()
    long_fr = forget(
        client, model["id"], {"class_labels": [1]}, "finetune", LONG_FINETUNE, on_verification_failure="accept"
    ).json()
    # different seeds: two jobs, not one coalesced job
    waiting = [
        forget(
            client,
            model["id"],
            {"class_labels": [c]},
            "finetune",
            {**QUICK, "seed": c},
            on_verification_failure="accept",
        ).json()
        for c in (2, 3)
    ]
    job_id = long_fr["jobs"][0]["id"]
    try:
        running = wait_for(
            client, f"/v1/jobs/{job_id}", lambda j: j["state"] == "RUNNING" and j["progress"]["step"] > 0, timeout=60
        )
        beat = _worker_running(client, job_id)
        assert running["device_class"] == "cpu"  # the test model is tiny: "auto" sends it to the cpu queue
        assert beat["name"] == running["worker"] and job_queue(settings.queue_name, "cpu") in beat["queues"]
        assert beat["device_classes"] == ["gpu", "cpu"]  # the test worker consumes both job queues
        assert "pid" not in beat and "hostname" not in beat  # shared infrastructure: no tenant sees them
        assert beat["current_job"]["started_at"] and beat["last_beat_at"] >= beat["started_at"]
        device = beat["device"]  # UNLEARND_DEVICE=cpu (and no GPU here): the CPU, never a failed beat
        assert device["type"] == "cpu" and device["name"] is None and device["cpu_count"] >= 1
        assert 0 < device["memory_used_bytes"] < device["memory_total_bytes"]
        assert 0 <= device["utilization_percent"] <= 100
        # its node and the pool child running the job, torch imported: well over 64 MiB, under the host's memory
        assert 64 * 2**20 < device["worker_rss_bytes"] < device["memory_total_bytes"]

        samples = scrape(api_url)  # the two waiting jobs stay QUEUED while the model is busy
        for state in ("QUEUED", "RUNNING"):
            assert value(samples, "unlearnd_jobs", state=state) == db_count(db, f"state = '{state}'")
        assert value(samples, "unlearnd_jobs", state="QUEUED", kind="unlearn", method="finetune") >= 2
        assert value(samples, "unlearnd_jobs", state="RUNNING", kind="unlearn", method="finetune") == 1
        broker = redis.Redis.from_url(settings.broker_url)
        for queue in (*job_queues(settings.queue_name), housekeeping_queue(settings.queue_name)):  # one series each
            for _ in range(5):  # deferred deliveries may move a message between the two reads: retry
                depth = value(scrape(api_url), "unlearnd_broker_queue_length", queue=queue)
                if depth == broker.llen(queue):
                    break
            else:
                raise AssertionError(f"{queue}: broker queue length {depth} != {broker.llen(queue)}")
        assert {s.labels["queue"] for s in samples if s.name == "unlearnd_broker_queue_length"} == {
            *job_queues(settings.queue_name),
            housekeeping_queue(settings.queue_name),
        }
        assert value(samples, "unlearnd_workers") >= 1 and value(samples, "unlearnd_workers", busy="true") >= 1
        assert {s.labels["source"] for s in samples if s.name == "unlearnd_metrics_source_up" and s.value == 1} == {
            "database",
            "broker",
            "heartbeats",
        }

        # a job whose worker beats is not stuck, however long ago it started
        _age(db, job_id, started_at=utcnow() - timedelta(hours=1))
        report = jobs.reconcile(db)
        commit(db)
        assert report["requeued"] == report["failed"] == 0
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "RUNNING"
    finally:
        client.post(f"/v1/jobs/{job_id}/cancel")
        for fr in waiting:
            client.post(f"/v1/forget-requests/{fr['id']}/cancel")
    assert wait_job(client, job_id, timeout=30)["state"] == "CANCELLED"
    wait_for(client, "/v1/workers", lambda b: all(w["current_job"] is None for w in b["items"]), timeout=15)


def _histogram(samples: list, **labels: str) -> tuple[float, float, list[float]]:
    """(count, sum, cumulative bucket counts) of the duration histogram's matching series."""
    name = "unlearnd_job_duration_seconds"
    bounds = sorted({float(s.labels["le"]) for s in samples if s.name == f"{name}_bucket"})
    buckets = [value(samples, f"{name}_bucket", le=_le(b), **labels) for b in bounds]
    return value(samples, f"{name}_count", **labels), value(samples, f"{name}_sum", **labels), buckets


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else str(bound)


def test_finished_jobs_feed_the_duration_histogram_and_failures_count_by_reason(
    client, api_url, model, digits_dataset, db
):
    broken = train_model(client, digits_dataset["id"])  # before the first scrape: its train job counts
    ran = "state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') AND started_at IS NOT NULL"
    before, finished_before = scrape(api_url), db_count(db, ran)
    done = [
        wait_request(
            client,
            forget(
                client, model["id"], {"class_labels": [c]}, "finetune", QUICK, on_verification_failure="accept"
            ).json()["id"],
        )
        for c in (4, 5)
    ]
    assert [fr["state"] for fr in done] == ["SUCCEEDED", "SUCCEEDED"]

    # a job that fails: its model's checkpoint file is gone from the artifact store
    key = db.execute(
        text("SELECT artifact_key FROM model_versions WHERE model_id = :m AND version = 1"), {"m": broken["id"]}
    ).scalar_one()
    (Path(get_settings().artifact_dir) / key).unlink()
    failed = wait_request(
        client,
        forget(client, broken["id"], {"class_labels": [0]}, "finetune", QUICK, on_verification_failure="accept").json()[
            "id"
        ],
    )
    assert failed["jobs"][0]["error"]["type"] == "/problems/artifact-missing"

    after = scrape(api_url)
    ok = {"kind": "unlearn", "method": "finetune", "outcome": "succeeded"}
    bad = {"kind": "unlearn", "method": "finetune", "outcome": "failed"}
    assert _histogram(after, **ok)[0] - _histogram(before, **ok)[0] == 2
    assert _histogram(after, **bad)[0] - _histogram(before, **bad)[0] == 1
    # over every series: exactly the jobs that ran to an end meanwhile, as the database counts them
    assert _histogram(after)[0] - _histogram(before)[0] == db_count(db, ran) - finished_before == 3
    count, total, buckets = _histogram(after, **ok)
    assert buckets == sorted(buckets) and buckets[-1] == count and total > _histogram(before, **ok)[1]
    reason = {"kind": "unlearn", "method": "finetune", "reason": "artifact-missing"}
    assert (
        value(after, "unlearnd_job_failures_total", **reason) - value(before, "unlearnd_job_failures_total", **reason)
        == 1
    )
    assert value(after, "unlearnd_job_failures_total") == db_count(db, "state = 'FAILED'")


def _ghost_running(db, model_id: str, label: int) -> tuple[dict, uuid.UUID]:
    """A job claimed by a worker that never beats (as if its node died right after the claim)."""
    fr = _accept_without_publishing(db, model_id, [label])
    job_id = uuid.UUID(fr["jobs"][0]["id"])
    assert jobs.claim(db, job_id, worker="ghost@nowhere").outcome is jobs.Claim.RUN
    db.commit()
    return fr, job_id


def _requeued(samples: list, reason: str) -> float:
    return value(samples, "unlearnd_jobs_requeued_total", reason=reason)


def test_stuck_jobs_are_requeued_logged_audited_and_counted(client, api_url, model, db, caplog):
    before = scrape(api_url)

    # expired lease, no heartbeat: requeued by the lease rule
    fr, job_id = _ghost_running(db, model["id"], 6)
    _age(db, str(job_id), lease_expires_at=utcnow() - timedelta(seconds=1))
    assert jobs.reconcile(db)["requeued"] == 1
    commit(db)
    assert wait_request(client, fr["id"])["state"] == "SUCCEEDED"

    # a live lease but no heartbeat: left alone while the claim is young, requeued once it is not
    fr, job_id = _ghost_running(db, model["id"], 7)
    assert jobs.reconcile(db)["requeued"] == 0
    commit(db)
    _age(db, str(job_id), started_at=utcnow() - timedelta(minutes=5))
    with caplog.at_level(logging.WARNING, logger="app.jobs.service"):
        assert jobs.reconcile(db)["requeued"] == 1
        commit(db)
    assert any(str(job_id) in r.getMessage() and "no heartbeat" in r.getMessage() for r in caplog.records)
    done = wait_job(client, str(job_id))
    assert done["state"] == "SUCCEEDED" and done["attempt"] == 2 and done["worker"] != "ghost@nowhere"
    events = client.get("/v1/audit-events", params={"job_id": str(job_id), "action": "job.requeued"}).json()["items"]
    assert [e["payload"]["reason"] for e in events] == ["worker lost: no heartbeat"]

    after = scrape(api_url)
    assert _requeued(after, "lease_expired") - _requeued(before, "lease_expired") == 1
    assert _requeued(after, "no_heartbeat") - _requeued(before, "no_heartbeat") == 1


@pytest.fixture(scope="module")
def api_log(api_url, tmp_path_factory) -> Path:
    """The session API's log file (tests/conftest.py writes it into a logs* temporary directory)."""
    logs = tmp_path_factory.getbasetemp().glob("logs*/api.log")
    found = [path for path in logs if not path.parent.is_symlink()]  # pytest links "logscurrent" too
    assert len(found) == 1, found
    return found[0]


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _lines_where(path: Path, key: str, wanted: str, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [entry for entry in _json_lines(path) if entry.get(key) == wanted]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no log line of {path.name} has {key}={wanted}")


def test_logs_are_json_lines_with_request_and_job_ids_and_no_personal_data(client, model, worker, api_log):
    rid = f"ops-{uuid.uuid4().hex}"
    subject = f"alice-{uuid.uuid4().hex[:8]}@example.com"
    sample_ids = train_ids(label=8, n=3)
    body = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "model_id": model["id"],
        "scope": {"sample_ids": sample_ids},
        "method": "finetune",
        "params": QUICK,
        "subject": subject,
        "on_verification_failure": "accept",
    }
    resp = client.post("/v1/forget-requests", json=body, headers={"X-Request-ID": rid})
    assert resp.status_code == 202 and resp.headers["x-request-id"] == rid
    fr = wait_request(client, resp.json()["id"])
    job_id = fr["jobs"][0]["id"]
    assert client.get("/healthz").headers["x-request-id"]  # made up when the client sends none

    (access,) = _lines_where(api_log, "request_id", rid)
    assert access["logger"] == "unlearnd.access" and access["level"] == "INFO" and access["timestamp"]
    assert access["route"] == "/v1/forget-requests" and access["status"] == 202 and access["duration_ms"] > 0
    for line in api_log.read_text().splitlines():  # every line of the API is one JSON object
        assert isinstance(json.loads(line), dict), line

    job_lines = _lines_where(worker.log_path, "job_id", job_id)
    messages = " | ".join(entry["message"] for entry in job_lines)
    assert "started" in messages and "succeeded" in messages, messages
    assert all(entry["logger"] and entry["level"] and entry["timestamp"] for entry in job_lines)

    for path in (api_log, worker.log_path):  # ids and hashes only: never who asked or which samples
        logged = path.read_text()
        assert subject not in logged and not any(f'"{s}"' in logged or f"'{s}'" in logged for s in sample_ids)
