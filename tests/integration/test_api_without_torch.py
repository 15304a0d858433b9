"""The API process serves methods, architectures, model registration (checkpoint layout checks) and
forget-request validation without ever loading torch: the shared library never enters its memory map."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import _process_env
from tests.helpers import FAST_ARCH, FAST_RECIPE, assert_problem, bearer, forget, register_digits, train_ids
from tests.processes import start_api
from tests.services import free_port
from workers.engine.architectures import build_model
from workers.engine.checkpoints import to_bytes

pytestmark = pytest.mark.integration


def _upload(c: httpx.Client, spec: dict, weights: bytes) -> httpx.Response:
    return c.post("/v1/models/upload", data={"spec": json.dumps(spec)}, files={"weights": ("w.safetensors", weights)})


def test_the_api_process_never_loads_torch(stack_env, admin_key, tmp_path):
    port = free_port()
    api = start_api(_process_env(stack_env), port, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=bearer(admin_key)) as c:
            methods = c.get("/v1/methods").json()
            assert {m["name"] for m in methods} >= {"retrain", "amnesiac", "gradient_ascent", "unsir"}
            assert "gpt2" in {a["name"] for a in c.get("/v1/architectures").json()}
            digits = register_digits(c)
            spec = {"name": f"m-{uuid.uuid4().hex[:8]}", "dataset_id": digits["id"], **FAST_ARCH, "recipe": FAST_RECIPE}
            good = to_bytes(build_model(FAST_ARCH["architecture"], FAST_ARCH["config"], (8, 8), 10))
            resp = _upload(c, spec, good)
            assert resp.status_code == 201, resp.text
            wrong = to_bytes(build_model("mlp", {}, (8, 8), 10))
            assert_problem(_upload(c, {**spec, "name": f"m-{uuid.uuid4().hex[:8]}"}, wrong), 422, "invalid-weights")
            # amnesiac needs an update log, which uploaded weights never have: refused at submit
            refused = forget(c, resp.json()["id"], {"type": "sample_ids", "sample_ids": train_ids(n=3)}, "amnesiac")
            assert_problem(refused, 422)
            lm = {**spec, "name": f"lm-{uuid.uuid4().hex[:8]}", "architecture": "gpt2", "config": {"n_layer": 1}}
            assert_problem(c.post("/v1/models", json=lm), 422, "architecture-dataset-mismatch")
        maps = Path(f"/proc/{api.proc.pid}/maps").read_text()
        assert "_pydantic_core" in maps  # the map lists the extension modules the process loaded
        assert "libtorch" not in maps
    finally:
        api.stop()
