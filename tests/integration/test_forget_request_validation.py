"""Every bad forget request gets a clear problem+json and queues nothing; retries are idempotent."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.jobs.tables import Job
from tests.helpers import assert_problem, forget, train_ids


def _job_count(db) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(Job))


def test_unknown_model_is_404(client):
    resp = forget(client, str(uuid.uuid4()), {"class_labels": [1]})
    assert_problem(resp, 404, "not-found")


def test_unknown_sample_ids_are_listed_and_nothing_is_queued(client, model, db):
    before = _job_count(db)
    unknown = [f"nobody-{i:03d}" for i in range(150)]
    resp = forget(client, model["id"], {"sample_ids": [*train_ids(n=3), *unknown]})
    body = assert_problem(resp, 422, "unknown-sample-ids")
    assert body["unknown_sample_ids"] == unknown[:100]
    assert body["unknown_count"] == 150
    assert _job_count(db) == before
    assert client.get("/v1/forget-requests", params={"model_id": model["id"]}).json()["items"] == []


def test_test_split_samples_are_refused(client, model):
    from tests.helpers import digits

    d = digits()
    test_id = d["ids"][d["split"] == "test"][0]
    body = assert_problem(forget(client, model["id"], {"sample_ids": [test_id]}), 422, "not-training-samples")
    assert body["sample_ids"] == [test_id]


@pytest.mark.parametrize(
    "scope",
    [
        {},
        {"sample_ids": []},
        {"class_labels": []},
        {"sample_ids": ["digits-0001"], "class_labels": [1]},
        {"class_labels": [-1]},
        {"sample_ids": [""]},
        {"everything": True},
    ],
    ids=["no-scope", "empty-ids", "empty-labels", "both", "negative-label", "empty-id", "unknown-key"],
)
def test_bad_scopes_are_422(client, model, scope):
    body = assert_problem(forget(client, model["id"], scope), 422, "validation-error")
    assert body["errors"] and all("scope" in e["field"] for e in body["errors"])


def test_unknown_and_all_class_labels(client, model):
    body = assert_problem(forget(client, model["id"], {"class_labels": [3, 42]}), 422)
    assert body["unknown_class_labels"] == [42]
    assert_problem(forget(client, model["id"], {"class_labels": list(range(10))}), 422)


def test_unknown_method_and_bad_params(client, model):
    body = assert_problem(forget(client, model["id"], {"class_labels": [1]}, method="forget-harder"), 422)
    assert "forget-harder" in body["detail"] or any("method" in e["field"] for e in body["errors"])
    for params in ({"epochs": 0}, {"epochs": 1000}, {"lr": -1}, {"lr": "fast"}, {"momentum": 0.9}):
        body = assert_problem(forget(client, model["id"], {"class_labels": [1]}, "finetune", params), 422)
        assert any(e["field"].startswith("body.finetune.params") for e in body["errors"]), body


def test_malformed_json_and_wrong_types(client, model):
    resp = client.post("/v1/forget-requests", content=b'{"request_id": ', headers={"content-type": "application/json"})
    assert_problem(resp, 422, "validation-error")
    resp = client.post(
        "/v1/forget-requests", json={"request_id": 5, "model_id": "not-a-uuid", "scope": [], "method": "retrain"}
    )
    fields = {e["field"] for e in assert_problem(resp, 422)["errors"]}
    assert {"body.retrain.request_id", "body.retrain.model_id", "body.retrain.scope"} <= fields


def test_same_idempotency_key_and_body_returns_the_original_answer(client, model, db):
    request_id = f"idem-{uuid.uuid4().hex}"
    first = forget(
        client, model["id"], {"class_labels": [5]}, "finetune", {"epochs": 1}, key=request_id, request_id=request_id
    )
    assert first.status_code == 202
    jobs_after_first = _job_count(db)
    again = forget(
        client, model["id"], {"class_labels": [5]}, "finetune", {"epochs": 1}, key=request_id, request_id=request_id
    )
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert _job_count(db) == jobs_after_first

    # same key, another body -> 422; same request_id, another body -> 409
    other = forget(
        client, model["id"], {"class_labels": [6]}, "finetune", {"epochs": 1}, key=request_id, request_id=request_id
    )
    assert_problem(other, 422, "idempotency-key-reused")
    # ... also when the other body would fail validation: the key's misuse is the error to report
    other = forget(client, model["id"], {"class_labels": [42]}, key=request_id, request_id=request_id)
    assert_problem(other, 422, "idempotency-key-reused")
    other = forget(client, model["id"], {"class_labels": [6]}, "finetune", {"epochs": 1}, request_id=request_id)
    assert_problem(other, 409, "request-id-conflict")
    # a retry without a key is recognised by its request_id
    again = forget(client, model["id"], {"class_labels": [5]}, "finetune", {"epochs": 1}, request_id=request_id)
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert _job_count(db) == jobs_after_first


def test_bad_idempotency_key_header(client, model):
    resp = forget(client, model["id"], {"class_labels": [1]}, key="has spaces in it")
    body = assert_problem(resp, 422, "validation-error")
    assert any("idempotency-key" in e["field"].lower() for e in body["errors"])


def test_subject_is_stored_only_as_hmac(client, model):
    resp = forget(client, model["id"], {"class_labels": [7]}, "finetune", {"epochs": 1})
    fr_id = resp.json()["id"]
    body = client.post(
        "/v1/forget-requests",
        json={
            "request_id": f"subj-{uuid.uuid4().hex}",
            "model_id": model["id"],
            "scope": {"class_labels": [7]},
            "method": "finetune",
            "params": {"epochs": 1},
            "subject": "alice@example.com",
        },
    ).json()
    assert body["subject_ref"] and len(body["subject_ref"]) == 64 and "alice" not in str(body)
    events = client.get("/v1/audit-events", params={"forget_request_id": body["id"]}).json()["items"]
    assert events and "alice" not in str(events)
    assert fr_id != body["id"]


def test_list_filters_are_validated(client, model):
    assert_problem(client.get("/v1/jobs", params={"state": "DONE"}), 422, "validation-error")
    assert_problem(client.get("/v1/forget-requests", params={"state": "done"}), 422, "validation-error")
    queued = client.get("/v1/jobs", params={"model_id": model["id"], "state": "SUCCEEDED"}).json()["items"]
    assert queued and all(j["state"] == "SUCCEEDED" and j["model_id"] == model["id"] for j in queued)
