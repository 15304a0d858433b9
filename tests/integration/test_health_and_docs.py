"""Health, readiness (against real and unreachable backends), OpenAPI and the problem catalogue."""

from __future__ import annotations

import httpx

from tests.helpers import assert_problem, bearer
from tests.processes import start_api
from tests.services import free_port


def test_health_ready_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    create = schema["paths"]["/v1/forget-requests"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(create["discriminator"]["mapping"]) >= {"retrain", "finetune"}
    finetune = schema["components"]["schemas"]["FinetuneParams"]["properties"]
    assert finetune["epochs"]["minimum"] == 1 and finetune["epochs"]["maximum"] == 100


def test_problem_catalogue(client):
    body = client.get("/problems/unknown-sample-ids").json()
    assert body["type"] == "/problems/unknown-sample-ids" and "first 100" in body["description"]
    assert_problem(client.get("/problems/no-such-thing"), 404)
    assert_problem(client.get("/v1/no-such-route"), 404, "route-not-found")
    assert_problem(client.put("/v1/forget-requests"), 405, "method-not-allowed")


def test_readyz_reports_an_unreachable_broker(stack_env, tmp_path):
    from tests.conftest import _process_env

    env = _process_env(stack_env)
    env["UNLEARND_BROKER_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    port = free_port()
    api = start_api(env, port, tmp_path / "api.log")
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30)
        body = assert_problem(resp, 503, "service-unavailable")
        assert body["checks"]["database"] == "ok" and body["checks"]["broker"].startswith("down")
    finally:
        api.stop()


def test_bodies_over_the_limit_get_a_413_problem(stack_env, admin_key, tmp_path):
    from tests.conftest import _process_env

    env = {**_process_env(stack_env), "UNLEARND_MAX_UPLOAD_BYTES": "4096"}
    port = free_port()
    api = start_api(env, port, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=bearer(admin_key)) as client:
            upload = client.post("/v1/datasets", data={"name": "big"}, files={"file": ("big.npz", b"\0" * 10_000)})
            body = assert_problem(upload, 413, "payload-too-large")
            assert body["limit_bytes"] == 4096 and "UNLEARND_MAX_UPLOAD_BYTES" in body["detail"]
            # a streamed body without Content-Length is cut off as soon as it crosses the limit
            streamed = client.post(
                "/v1/forget-requests", content=iter([b"x" * 1000] * 10), headers={"content-type": "application/json"}
            )
            assert_problem(streamed, 413, "payload-too-large")
    finally:
        api.stop()
