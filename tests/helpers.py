"""Small helpers the API tests share: polling, registering data and models, problem assertions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import lru_cache

import httpx
import numpy as np

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
# Small and quick: ~1 s to train on digits on two cores, ~95% test accuracy.
FAST_ARCH = {"architecture": "cnn_small", "config": {"channels": [8, 16], "hidden": 32}}
FAST_RECIPE = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "epochs": 8, "batch_size": 64, "seed": 0}


def new_api_key(tenant_id: str, scopes: list[str], name: str = "tests") -> str:
    """A key made the way an operator's CLI makes one (straight into the test database)."""
    from app.auth import service
    from app.db import commit, session_scope

    with session_scope() as db:
        _, secret = service.create_key(db, tenant_id=tenant_id, name=name, scopes=scopes, actor="cli")
        commit(db)
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def wait_for(client: httpx.Client, path: str, done: Callable[[dict], bool], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        resp = client.get(path)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if done(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting on {path}; last answer: {body}")


def wait_job(client: httpx.Client, job_id: str, states=TERMINAL, timeout: float = 120) -> dict:
    return wait_for(client, f"/v1/jobs/{job_id}", lambda j: j["state"] in states, timeout)


def wait_request(client: httpx.Client, request_id: str, timeout: float = 120) -> dict:
    return wait_for(client, f"/v1/forget-requests/{request_id}", lambda r: r["state"] in TERMINAL, timeout)


def register_digits(client: httpx.Client) -> dict:
    resp = client.post("/v1/datasets", data={"builtin": "digits", "name": f"digits-{uuid.uuid4().hex[:6]}"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def train_model(client: httpx.Client, dataset_id: str, name: str | None = None, **overrides) -> dict:
    spec = {
        "name": name or f"m-{uuid.uuid4().hex[:8]}",
        "dataset_id": dataset_id,
        **FAST_ARCH,
        "recipe": FAST_RECIPE,
        **overrides,
    }
    resp = client.post("/v1/models", json=spec)
    assert resp.status_code == 202, resp.text
    model = resp.json()
    job = wait_job(client, model["training_job_id"])
    assert job["state"] == "SUCCEEDED", job
    return client.get(f"/v1/models/{model['id']}").json()


def forget(
    client: httpx.Client,
    model_id: str,
    scope: dict,
    method: str = "retrain",
    params: dict | None = None,
    key: str | None = None,
    request_id: str | None = None,
    **fields,
) -> httpx.Response:
    """POST a forget request; ``fields``: more of the body (on_verification_failure, verification, ...)."""
    body = {
        "request_id": request_id or f"req-{uuid.uuid4().hex}",
        "model_id": model_id,
        "scope": scope,
        "method": method,
        **fields,
    }
    if params is not None:
        body["params"] = params
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/forget-requests", json=body, headers=headers)


def audit_events(client: httpx.Client, **params) -> list[dict]:
    """Every audit event the client's tenant may see that matches ``params``, page after page."""
    events, token = [], None
    while True:
        paging = {"page_token": token} if token else {}
        page = client.get("/v1/audit-events", params={"page_size": 500, **params, **paging}).json()
        events += page["items"]
        token = page["next_page_token"]
        if not token:
            return events


def assert_problem(resp: httpx.Response, status: int, type_slug: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("/problems/")
    if type_slug:
        assert body["type"] == f"/problems/{type_slug}", body
    return body


@lru_cache
def digits():
    from app.datasets.builtin import digits_arrays

    return digits_arrays()


def train_ids(label: int | None = None, n: int | None = None) -> list[str]:
    d = digits()
    mask = d["split"] == "train"
    if label is not None:
        mask &= d["y"] == label
    ids = d["ids"][mask].tolist()
    return ids[:n] if n else ids


def count_train(exclude_labels=()) -> int:
    d = digits()
    return int(((d["split"] == "train") & ~np.isin(d["y"], list(exclude_labels))).sum())
