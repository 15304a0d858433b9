"""The verification gate through the API, on the real stack: a bad explicit method FAILS and changes
nothing, ``auto`` escalates until a model passes, ``accept`` makes an unverified version, the policy
is published and its loosening audited, and no method reads the evaluation rows."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors

from app.datasets.builtin import digits_arrays
from tests.helpers import assert_problem, audit_events, forget, register_digits, train_ids, train_model, wait_request
from tests.processes import ROOT
from workers.engine.holdout import calibration_mask

BAD_LABEL_FLIP = {"lr": 1.0, "epochs": 3, "retain_batches": 0}  # wrecks the other classes: fails utility


@pytest.fixture
def model(client):
    """A model of its own: a test's erasure changes its head (and its dataset's tombstones)."""
    return train_model(client, register_digits(client)["id"])


def _done(client, resp) -> dict:
    assert resp.status_code == 202, resp.text
    return wait_request(client, resp.json()["id"])


def _tests(job: dict) -> dict[str, dict]:
    return {t["name"]: t for t in job["metrics"]["verification"]["tests"]}


def test_a_bad_explicit_method_fails_verification_and_changes_nothing(client, model):
    fr = _done(client, forget(client, model["id"], {"class_labels": [2]}, "label_flip", BAD_LABEL_FLIP))
    job = fr["jobs"][0]
    assert fr["state"] == job["state"] == "FAILED", fr
    error = job["error"]
    assert error["type"] == "/problems/verification-failed" and error["status"] == 409
    assert "utility" in [t["name"] for t in error["failed_tests"]], error
    assert "no version was made" in error["detail"]
    # every test's statistic and threshold is stored, also for a failure
    tests = _tests(job)
    assert set(tests) == {"class_forgetting", "utility", "relearn"}
    assert tests["utility"]["passed"] is False and tests["utility"]["statistic"] < tests["utility"]["threshold"]
    assert job["metrics"]["verification"]["guarantee"] is None and job["result_version"] is None
    # no version made, none retired: the head is where it was and still downloads
    after = client.get(f"/v1/models/{model['id']}").json()
    assert after["head_version"] == model["head_version"]
    assert client.get(f"/v1/models/{model['id']}/versions/{model['head_version']}/checkpoint").status_code == 200
    assert_problem(client.get(f"/v1/forget-requests/{fr['id']}/certificate"), 409, "certificate-not-available")
    events = audit_events(client, forget_request_id=fr["id"])
    actions = [e["action"] for e in events]
    assert "job.failed" in actions and "model.version_created" not in actions
    [failed] = [e for e in events if e["action"] == "job.verification_failed"]
    assert failed["payload"]["method"] == "label_flip" and failed["payload"]["failed_tests"] == error["failed_tests"]


def test_auto_escalates_until_a_model_passes(client, model):
    resp = client.post(
        "/v1/forget-requests",
        json={"request_id": f"auto-{uuid.uuid4().hex}", "model_id": model["id"], "scope": {"class_labels": [2]}},
    )
    fr = _done(client, resp)
    job = fr["jobs"][0]
    assert fr["method"] == job["method"] == "auto" and fr["state"] == "SUCCEEDED", fr
    metrics = job["metrics"]
    gate = metrics["verification"]
    assert gate["guarantee"] in ("verified", "exact") and gate["method"] == metrics["method_used"]
    attempts = metrics["attempts"]
    assert attempts[0]["method"] == "unsir" and attempts[-1]["method"] == metrics["method_used"]
    assert all(a["outcome"] in ("failed_verification", "refused") for a in attempts[:-1])
    if gate["guarantee"] == "verified":
        assert all(t["passed"] is not False for t in gate["tests"])
    else:  # retrain is exact; its tests are reported all the same
        assert metrics["method_used"] == "retrain" and _tests(job)["class_forgetting"]["passed"]
    assert metrics["holdout_roles"]["evaluation"] > metrics["holdout_roles"]["calibration"] > 0
    events = audit_events(client, forget_request_id=fr["id"])
    failed = [e for e in events if e["action"] == "job.verification_failed"]
    escalated = [e for e in events if e["action"] == "job.escalated"]
    assert len(escalated) == len(attempts) - 1 and len(failed) == sum(
        a["outcome"] == "failed_verification" for a in attempts
    )
    assert escalated[0]["payload"]["from"] == "unsir" and escalated[-1]["payload"]["to"] == metrics["method_used"]
    for event in failed:  # test statistics only: nothing about the samples
        assert {t["name"] for t in event["payload"]["failed_tests"]} <= {"class_forgetting", "utility", "relearn"}
    # the certificate states the guarantee, the methods tried in order, and the offline verifier prints it
    cert = client.get(f"/v1/forget-requests/{fr['id']}/certificate").json()
    body = cert["certificate"]
    assert body["guarantee"] == gate["guarantee"] and [m["method"] for m in body["methods_tried"]] == [
        a["method"] for a in attempts
    ]
    assert body["code_version"]["version"] and f"; {gate['guarantee']}" in body["claim"]
    assert "verified" not in body["claim"] or gate["guarantee"] == "verified"
    _verify_offline(client, cert, gate["guarantee"])


def test_accept_makes_an_unverified_version_and_says_so(client, model):
    fr = _done(
        client,
        forget(
            client, model["id"], {"class_labels": [5]}, "label_flip", BAD_LABEL_FLIP, on_verification_failure="accept"
        ),
    )
    job = fr["jobs"][0]
    assert fr["state"] == "SUCCEEDED" and job["metrics"]["verification"]["guarantee"] == "unverified"
    assert job["on_verification_failure"] == "accept" and fr["on_verification_failure"] == "accept"
    cert = client.get(f"/v1/forget-requests/{fr['id']}/certificate").json()
    assert cert["certificate"]["guarantee"] == "unverified"
    assert "UNVERIFIED" in cert["certificate"]["claim"] and "utility" in cert["certificate"]["claim"]
    assert "utility" in cert["certificate"]["verification"]["failed_tests"]
    _verify_offline(client, cert, "unverified")


def test_escalate_goes_on_with_autos_plan(client, model):
    fr = _done(
        client,
        forget(
            client, model["id"], {"class_labels": [7]}, "label_flip", BAD_LABEL_FLIP, on_verification_failure="escalate"
        ),
    )
    attempts = fr["jobs"][0]["metrics"]["attempts"]
    assert fr["state"] == "SUCCEEDED" and [a["method"] for a in attempts][:2] == ["label_flip", "unsir"]
    assert attempts[0]["outcome"] == "failed_verification"
    assert attempts[-1]["outcome"] in ("verified", "exact")


def test_the_policy_is_published_and_a_loosening_needs_a_reason_that_is_audited(client, model):
    policy = client.get("/v1/verification-policy").json()
    assert policy["thresholds"]["mia_margin"]["default"] == 0.05 and policy["thresholds"]["mia_margin"]["loosest"]
    assert "calibration" in policy["holdout_roles"] and policy["auto_plans"]
    assert client.get("/v1/methods").json()[0]["name"] == "auto"
    scope = {"sample_ids": train_ids(n=5)}
    base = {"model_id": model["id"], "scope": scope, "method": "retrain"}
    no_reason = client.post(
        "/v1/forget-requests", json={**base, "request_id": f"l-{uuid.uuid4().hex}", "verification": {"mia_margin": 0.1}}
    )
    assert "needs a reason" in assert_problem(no_reason, 422)["detail"]
    too_loose = client.post(
        "/v1/forget-requests",
        json={**base, "request_id": f"l-{uuid.uuid4().hex}", "verification": {"mia_margin": 0.4, "reason": "why"}},
    )
    assert "loosest allowed" in assert_problem(too_loose, 422)["detail"]
    bad_choice = {**base, "request_id": f"l-{uuid.uuid4().hex}", "on_verification_failure": "ignore"}
    assert_problem(client.post("/v1/forget-requests", json=bad_choice), 422)
    change = {"mia_margin": 0.1, "reason": "a pilot the DPO signed off"}
    ok = client.post(
        "/v1/forget-requests", json={**base, "request_id": f"l-{uuid.uuid4().hex}", "verification": change}
    )
    fr = _done(client, ok)
    assert fr["state"] == "SUCCEEDED" and fr["verification"] == change
    assert fr["jobs"][0]["metrics"]["verification"]["policy"]["mia_margin"] == 0.1
    [received] = [
        e for e in audit_events(client, forget_request_id=fr["id"]) if e["action"] == "forget_request.received"
    ]
    assert received["payload"]["verification"] == change


def _corrupted_copy() -> bytes:
    """Digits with every evaluation row's label moved to another class (and nothing else changed)."""
    d = digits_arrays()
    evaluation = (d["split"] != "train") & ~calibration_mask(d["ids"].tolist())
    y = d["y"].copy()
    y[evaluation] = (y[evaluation] + 1) % 10
    buf = io.BytesIO()
    np.savez(buf, ids=d["ids"], x=d["x"], y=y, split=d["split"])
    return buf.getvalue()


def test_no_method_reads_the_evaluation_rows(client):
    """Two copies of digits that differ only in the labels of the evaluation rows: the trained models
    and the unlearned ones are bit-identical (gradient_ascent reads held-out rows to calibrate its
    stopping point: only calibration rows); the reported test accuracies differ (they read them)."""
    clean = register_digits(client)
    resp = client.post(
        "/v1/datasets",
        data={"name": f"corrupt-{uuid.uuid4().hex[:6]}"},
        files={"file": ("digits.npz", _corrupted_copy())},
    )
    assert resp.status_code == 201, resp.text
    models = [train_model(client, ds["id"]) for ds in (clean, resp.json())]
    v1 = [client.get(f"/v1/models/{m['id']}/versions/1").json() for m in models]
    assert _weights(client, models, 1) and v1[0]["metrics"]["test_accuracy"] > 0.8 > v1[1]["metrics"]["test_accuracy"]
    ids = train_ids(n=30)
    results = []
    for m in models:
        params = {"gradients": "current", "max_epochs": 5}
        resp = forget(client, m["id"], {"sample_ids": ids}, "gradient_ascent", params, on_verification_failure="accept")
        fr = _done(client, resp)
        assert fr["state"] == "SUCCEEDED", fr
        results.append(fr["jobs"][0])
    assert _weights(client, models, 2)  # the method's output: bit-identical
    calibration = [r["metrics"]["calibration"] for r in results]
    assert calibration[0] == calibration[1] and calibration[0]["holdout_samples"] > 0
    assert results[0]["metrics"]["test_accuracy"] != results[1]["metrics"]["test_accuracy"]


def _weights(client, models: list[dict], version: int) -> bool:
    """Whether the models' checkpoints of ``version`` hold bit-identical tensors (their metadata
    names their own model and job)."""
    a, b = (load_safetensors(client.get(f"/v1/models/{m['id']}/versions/{version}/checkpoint").content) for m in models)
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def _verify_offline(client, cert: dict, guarantee: str) -> None:
    key = client.get("/v1/keys").json()["keys"][0]["public_key"]
    path = ROOT / "var" / f"cert-{uuid.uuid4().hex}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(cert))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "app.cli", "verify-certificate", str(path), f"--public-key={key}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        path.unlink()
    assert out.returncode == 0 and out.stdout.startswith("valid") and f"guarantee: {guarantee}" in out.stdout, out
