"""API keys: 401 without a valid key, 403 without the scope, and one tenant never sees another's
datasets, models, requests, jobs, certificates or audit events (404, as if they did not exist)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.helpers import assert_problem, audit_events, bearer, forget, new_api_key, train_ids, wait_request


@pytest.fixture(scope="module")
def other_tenant(api_url) -> httpx.Client:
    """An admin of another tenant: admin holds every scope, so any refusal is the tenant's doing."""
    with httpx.Client(base_url=api_url, timeout=60, headers=bearer(new_api_key("tenant-b", ["admin"]))) as c:
        yield c


@pytest.fixture(scope="module")
def erased(client, model) -> dict:
    """A SUCCEEDED forget request of the default tenant (with a certificate and audit events)."""
    resp = forget(
        client, model["id"], {"sample_ids": train_ids(n=2)}, "finetune", {"epochs": 1}, on_verification_failure="accept"
    )
    assert resp.status_code == 202, resp.text
    fr = wait_request(client, resp.json()["id"])
    assert fr["state"] == "SUCCEEDED", fr
    return fr


def _key_with(client: httpx.Client, *scopes: str) -> dict:
    resp = client.post("/v1/api-keys", json={"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": list(scopes)})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_no_key_or_an_unknown_key_is_401_with_a_challenge(api_url):
    for headers in ({}, bearer("unl_" + "x" * 43), bearer("not-even-our-format"), {"Authorization": "Basic eDp5"}):
        resp = httpx.get(f"{api_url}/v1/models", headers=headers, timeout=30)
        assert_problem(resp, 401, "unauthenticated")
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_public_endpoints_need_no_key(api_url):
    for path in ("/healthz", "/v1/keys", "/openapi.json", "/problems/unauthenticated"):
        assert httpx.get(f"{api_url}{path}", timeout=30).status_code == 200, path


def test_a_key_without_the_scope_is_403_and_nothing_is_written(api_url, client, model, db):
    from app.forget_requests.tables import ForgetRequest

    reader = _key_with(client, "requests:read", "models:read")
    before = db.query(ForgetRequest).count()
    with httpx.Client(base_url=api_url, timeout=60, headers=bearer(reader["secret"])) as c:
        assert c.get(f"/v1/models/{model['id']}").status_code == 200
        denied = forget(c, model["id"], {"sample_ids": train_ids(n=1)})
        body = assert_problem(denied, 403, "insufficient-scope")
        assert body["required_scopes"] == ["requests:write"]
        assert_problem(c.get("/v1/audit-events"), 403, "insufficient-scope")
        assert_problem(c.get("/v1/api-keys"), 403, "insufficient-scope")
        assert_problem(c.get("/v1/workers"), 403, "insufficient-scope")  # shared infrastructure: admin
    db.expire_all()
    assert db.query(ForgetRequest).count() == before


def test_another_tenant_gets_404_for_every_resource_of_this_one(client, other_tenant, model, erased):
    job_id = erased["jobs"][0]["id"]
    for path in (
        f"/v1/datasets/{model['dataset_id']}",
        f"/v1/models/{model['id']}",
        f"/v1/models/{model['id']}/versions",
        f"/v1/models/{model['id']}/versions/1",
        f"/v1/models/{model['id']}/versions/2/checkpoint",
        f"/v1/forget-requests/{erased['id']}",
        f"/v1/forget-requests/{erased['id']}/certificate",
        f"/v1/jobs/{job_id}",
        f"/v1/jobs/{job_id}/batches",
    ):
        assert_problem(other_tenant.get(path), 404, "not-found")
        assert client.get(path).status_code == 200, path  # the owner still sees it
    assert_problem(other_tenant.post(f"/v1/jobs/{job_id}/cancel"), 404, "not-found")
    assert_problem(other_tenant.post(f"/v1/forget-requests/{erased['id']}/cancel"), 404, "not-found")
    # nor can it act on the model, or register one on this tenant's dataset
    assert_problem(forget(other_tenant, model["id"], {"sample_ids": train_ids(n=1)}), 404, "not-found")
    spec = {"name": "stolen", "dataset_id": model["dataset_id"], "architecture": "mlp", "config": {}}
    assert_problem(other_tenant.post("/v1/models", json=spec), 404, "not-found")


def test_lists_and_the_audit_trail_hold_only_the_callers_tenant(client, other_tenant, model, erased):
    mine = {m["id"] for m in client.get("/v1/models", params={"page_size": 200}).json()["items"]}
    assert model["id"] in mine
    for path in ("/v1/models", "/v1/datasets", "/v1/forget-requests", "/v1/jobs", "/v1/audit-events"):
        items = other_tenant.get(path, params={"page_size": 200}).json()["items"]
        text = str(items)
        assert model["id"] not in text and erased["id"] not in text, path
    events = other_tenant.get("/v1/audit-events", params={"page_size": 500}).json()["items"]
    assert events and {e["tenant_id"] for e in events} == {"tenant-b"}  # its own key's creation at least
    export = other_tenant.get("/v1/audit-events/export", params={"format": "jsonl"}).text
    assert model["id"] not in export and erased["id"] not in export
    # the owner's trail has them
    assert erased["id"] in str(client.get("/v1/audit-events", params={"forget_request_id": erased["id"]}).json())


def test_client_ids_and_idempotency_keys_are_per_tenant(client, other_tenant, model):
    """Another tenant reusing an Idempotency-Key or request_id neither replays nor blocks this one's."""
    ds = other_tenant.post("/v1/datasets", data={"builtin": "digits", "name": "b-digits"}).json()
    spec = {
        "name": model["name"],  # the same model name as the other tenant's: allowed
        "dataset_id": ds["id"],
        "architecture": "cnn_small",
        "config": {"channels": [4, 8], "hidden": 16},
        "recipe": {"epochs": 1, "batch_size": 256},
    }
    b_model = other_tenant.post("/v1/models", json=spec)
    assert b_model.status_code == 202, b_model.text
    shared = {"key": f"k-{uuid.uuid4().hex}", "request_id": f"r-{uuid.uuid4().hex}"}
    shared["on_verification_failure"] = "accept"
    a = forget(client, model["id"], {"sample_ids": train_ids(n=1)}, "finetune", {"epochs": 1}, **shared)
    b = forget(other_tenant, b_model.json()["id"], {"sample_ids": train_ids(n=1)}, "finetune", {"epochs": 1}, **shared)
    assert a.status_code == 202 and b.status_code == 202, (a.text, b.text)
    assert "idempotent-replayed" not in b.headers and a.json()["id"] != b.json()["id"]
    wait_request(client, a.json()["id"])  # its erasure moves the shared model's head: not under the next tests


def test_admin_manages_keys_and_a_revoked_key_stops_working(api_url, client):
    before = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    created = _key_with(client, "requests:read")
    assert created["secret"].startswith(created["prefix"]) and created["tenant_id"] == "default"
    listed = client.get("/v1/api-keys", params={"page_size": 200}).json()["items"]
    assert created["id"] in {k["id"] for k in listed}
    assert all("secret" not in k for k in listed)
    with httpx.Client(base_url=api_url, timeout=30, headers=bearer(created["secret"])) as c:
        assert c.get("/v1/forget-requests").status_code == 200
        revoked = client.post(f"/v1/api-keys/{created['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert_problem(c.get("/v1/forget-requests"), 401, "unauthenticated")  # same API process: at once
    events = audit_events(client, since=before)
    mine = [e for e in events if e["entity_id"] == created["id"]]
    assert [e["action"] for e in mine] == ["api_key.created", "api_key.revoked"]
    assert all(created["secret"] not in str(e) for e in events)


def test_a_download_event_names_the_key_that_downloaded(api_url, client, model):
    downloader = _key_with(client, "models:read")
    head = client.get(f"/v1/models/{model['id']}").json()["head_version"]  # earlier erasures moved it
    with httpx.Client(base_url=api_url, timeout=60, headers=bearer(downloader["secret"])) as c:
        assert c.get(f"/v1/models/{model['id']}/versions/{head}/checkpoint").status_code == 200
    events = client.get("/v1/audit-events", params={"action": "checkpoint.downloaded", "page_size": 500}).json()
    assert f"api-key:{downloader['id']}" in {e["actor"] for e in events["items"]}


def test_bootstrap_admin_prints_a_working_key_once_per_tenant(api_url, stack_env):
    tenant = f"boot-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **stack_env}
    cmd = [sys.executable, "-m", "app.cli", "bootstrap-admin", "--tenant", tenant]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    secret = first.stdout.strip()
    resp = httpx.post(f"{api_url}/v1/api-keys", json={"name": "ops", "scopes": ["audit:read"]}, headers=bearer(secret))
    assert resp.status_code == 201 and resp.json()["tenant_id"] == tenant, resp.text
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already has an active admin key" in again.stderr
    bad = subprocess.run([*cmd[:-1], "../etc"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "invalid tenant" in bad.stderr
