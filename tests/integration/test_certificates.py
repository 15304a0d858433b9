"""Signed deletion certificates against the real stack: issue, verify offline (library and CLI), match
the checkpoint's bytes, detect tampering, stay byte-identical, and refuse requests not yet SUCCEEDED."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.certificates.offline import b64url_encode, raw_public_bytes, verify_certificate
from tests.helpers import assert_problem, forget, train_ids, wait_request

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = "alice@example.com"


def _cli(cert: Path, key: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        # "--public-key=KEY": a base64url key may start with "-", which argparse takes for an option
        [sys.executable, "-m", "app.cli", "verify-certificate", str(cert), f"--public-key={key}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def succeeded(client, model) -> dict:
    """A SUCCEEDED sample-scope request that named its subject (which must not leak into the
    certificate). 20 samples cannot pass the membership test on digits: accepted, so unverified."""
    ids = train_ids(n=20)
    body = {
        "request_id": f"cert-{uuid.uuid4().hex}",
        "model_id": model["id"],
        "scope": {"sample_ids": ids},
        "method": "finetune",
        "params": {"epochs": 1},
        "subject": SUBJECT,
        "on_verification_failure": "accept",
    }
    resp = client.post("/v1/forget-requests", json=body)
    assert resp.status_code == 202, resp.text
    fr = wait_request(client, resp.json()["id"])
    assert fr["state"] == "SUCCEEDED", fr
    return {"fr": fr, "ids": ids}


@pytest.fixture(scope="module")
def public_key(client) -> dict:
    resp = client.get("/v1/keys")
    assert resp.status_code == 200, resp.text
    keys = resp.json()["keys"]
    assert len(keys) == 1 and keys[0]["alg"] == "Ed25519" and len(keys[0]["kid"]) == 16
    assert keys[0]["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    return keys[0]


def test_certificate_states_the_erasure_and_verifies(client, model, succeeded, public_key):
    fr, job = succeeded["fr"], succeeded["fr"]["jobs"][0]
    resp = client.get(f"/v1/forget-requests/{fr['id']}/certificate")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    cert = doc["certificate"]

    result = verify_certificate(doc, public_key["public_key"])
    assert result.ok, result.reason
    assert verify_certificate(doc, public_key["public_key_pem"]).ok
    assert doc["signature"]["kid"] == public_key["kid"]

    assert cert["type"] == "unlearnd.deletion-certificate" and cert["version"] == 3
    assert (cert["forget_request_id"], cert["request_id"]) == (fr["id"], fr["request_id"])
    assert cert["regulation"] == "gdpr" and cert["subject_ref"] == fr["subject_ref"] and len(fr["subject_ref"]) == 64
    assert cert["scope"] == {"type": "sample_ids", "count": 20, "sha256": fr["scope"]["sha256"]}
    assert cert["model"] == {"id": model["id"], "name": model["name"]}
    assert (cert["method"], cert["params"]) == ("finetune", job["params"])
    assert cert["metrics"] == job["metrics"] and cert["metrics"]["counts"]["forget"] == 20
    # the guarantee and its evidence: every test with its statistic and threshold, the methods tried
    gate = job["metrics"]["verification"]
    assert cert["guarantee"] == gate["guarantee"] == "unverified"
    assert [t["name"] for t in cert["verification"]["tests"]] == [t["name"] for t in gate["tests"]]
    assert all({"statistic", "threshold", "passed"} <= set(t) for t in cert["verification"]["tests"])
    assert "membership_inference" in cert["verification"]["failed_tests"]
    assert cert["methods_tried"] == [{"method": "finetune", "params": job["params"], "outcome": "failed_verification"}]
    assert cert["code_version"]["version"] == "0.1.0"
    assert "Removed 20 training samples" in cert["claim"] and model["name"] in cert["claim"]
    assert "UNVERIFIED: accepted after failing membership_inference" in cert["claim"]
    assert result.guarantee == "unverified" and "guarantee: unverified" in result.reason
    # no personal data: neither the subject nor any erased sample ID appears anywhere in the answer
    assert SUBJECT not in resp.text
    assert not [i for i in succeeded["ids"] if f'"{i}"' in resp.text]

    # the versions: their sha256 is the sha256 of the bytes the service serves
    assert (cert["source_version"]["number"], cert["result_version"]["number"]) == (
        job["source_version"],
        job["result_version"],
    )
    ckpt = client.get(f"/v1/models/{model['id']}/versions/{job['result_version']}/checkpoint")
    assert ckpt.status_code == 200
    assert cert["result_version"]["sha256"] == ckpt.headers["x-checkpoint-sha256"]
    assert cert["result_version"]["sha256"] == hashlib.sha256(ckpt.content).hexdigest()
    source = client.get(f"/v1/models/{model['id']}/versions/{job['source_version']}").json()
    assert cert["source_version"]["sha256"] == source["sha256"] != cert["result_version"]["sha256"]

    # times are the request's and the job's, in UTC, ordered
    times = {k: datetime.fromisoformat(v) for k, v in cert["times"].items()}
    assert times["received_at"] == datetime.fromisoformat(fr["received_at"])
    assert times["started_at"] == datetime.fromisoformat(job["started_at"])
    assert times["finished_at"] == datetime.fromisoformat(job["finished_at"])
    assert all(t.utcoffset().total_seconds() == 0 for t in times.values())
    assert times["received_at"] <= times["started_at"] <= times["finished_at"]

    # anchored at the last event the success wrote for this request, and that event is in the chain
    events = client.get("/v1/audit-events", params={"forget_request_id": fr["id"], "page_size": 100}).json()["items"]
    anchor = next(e for e in events if e["seq"] == cert["audit_anchor"]["seq"])
    assert anchor["hash"] == cert["audit_anchor"]["hash"] and anchor["job_id"] == job["id"]
    assert anchor["action"] == "dataset.samples_erased" and anchor["seq"] > max(
        e["seq"] for e in events if e["action"] == "job.succeeded"
    )
    # and a signed chain head covers it: the one the certificate names, listed with its signature
    heads = client.get("/v1/audit/heads", params={"page_size": 500}).json()["items"]
    named = [h for h in heads if h["head"]["seq"] == cert["chain_head"]["seq"]]
    assert len(named) == 1 and cert["chain_head"]["seq"] >= anchor["seq"]
    assert {k: named[0]["head"][k] for k in ("seq", "hash", "signed_at")} == cert["chain_head"]
    assert not [h for h in heads if anchor["seq"] <= h["head"]["seq"] < cert["chain_head"]["seq"]]  # the earliest
    verified = client.get("/v1/audit-events/verify", params={"head": json.dumps(named[0])}).json()
    assert verified["ok"] and verified["latest_head_seq"] >= cert["chain_head"]["seq"], verified


def test_two_fetches_are_byte_identical(client, succeeded):
    path = f"/v1/forget-requests/{succeeded['fr']['id']}/certificate"
    first, second = client.get(path), client.get(path)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and len(first.content) > 500


def test_cli_verifies_offline_and_detects_tampering(client, succeeded, public_key, tmp_path):
    doc = client.get(f"/v1/forget-requests/{succeeded['fr']['id']}/certificate").json()
    cert_file = tmp_path / "cert.json"
    cert_file.write_text(json.dumps(doc, indent=2), encoding="utf-8")  # pretty-printed: still valid
    pem_file = tmp_path / "key.pem"
    pem_file.write_text(public_key["public_key_pem"], encoding="utf-8")

    for key in (public_key["public_key"], str(pem_file)):
        ok = _cli(cert_file, key)
        assert ok.returncode == 0 and ok.stdout.startswith("valid: signed by key"), ok.stderr
        assert "guarantee: unverified (membership_inference" in ok.stdout

    doc["certificate"]["result_version"]["sha256"] = "0" * 64
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(doc), encoding="utf-8")
    bad = _cli(altered, public_key["public_key"])
    assert bad.returncode == 1 and bad.stdout.startswith("INVALID: signature does not match"), bad.stdout

    stranger = b64url_encode(raw_public_bytes(Ed25519PrivateKey.generate().public_key()))
    wrong_key = _cli(cert_file, stranger)
    assert wrong_key.returncode == 1 and wrong_key.stdout.startswith("INVALID: key id"), wrong_key.stdout


def test_no_certificate_before_success_or_for_unknown_requests(client, model, succeeded):
    # `succeeded` first: the model's previous job is finished, so this one starts from QUEUED
    resp = forget(client, model["id"], {"sample_ids": train_ids(n=40)[20:]}, method="retrain")
    assert resp.status_code == 202, resp.text
    fr_id = resp.json()["id"]
    early = assert_problem(client.get(f"/v1/forget-requests/{fr_id}/certificate"), 409, "certificate-not-available")
    assert early["state"] in {"QUEUED", "RUNNING"} and early["state"] in early["detail"]

    assert client.post(f"/v1/forget-requests/{fr_id}/cancel").status_code == 202
    assert wait_request(client, fr_id)["state"] == "CANCELLED"
    late = assert_problem(client.get(f"/v1/forget-requests/{fr_id}/certificate"), 409, "certificate-not-available")
    assert late["state"] == "CANCELLED"
    assert client.get("/problems/certificate-not-available").status_code == 200

    assert_problem(client.get(f"/v1/forget-requests/{uuid.uuid4()}/certificate"), 404, "not-found")
    assert_problem(client.get("/v1/forget-requests/not-a-uuid/certificate"), 422, "validation-error")
