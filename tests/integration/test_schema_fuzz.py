"""Fuzz the live API from its own OpenAPI schema (schemathesis): no input may cause a server error.

Every operation in ``/openapi.json`` gets generated requests, valid ("positive") and invalid
("negative": wrong types, out-of-range numbers, missing or extra fields, odd strings), sent over HTTP
to the real API with an admin key, in two passes: with generated path ids (which mostly name nothing,
so those requests end at a 404), then again with the ids of real resources of the fuzzer's tenant, so
that bad query parameters and bodies reach the code behind the lookup (version numbers, attempts,
filters, page tokens). The run is derandomized: CI sees the same cases every time.

Checked on every answer:
- no 5xx (schemathesis' ``not_a_server_error``);
- every error is RFC 9457 problem+json with a ``/problems/<slug>`` type and the status in the body,
  and is one the API documents for bad input (never a bare 400, never the database's
  ``unstorable-value`` safety net: those values must be refused by validation first);
- a documented answer matches its schema in the OpenAPI document (``response_schema_conformance``);
  statuses the schema does not list (401/404/409/410/413) are held to the problem+json rule instead.

Written against schemathesis' public strategy API (``operation.as_strategy``) and Hypothesis'
``@given``, not the ``schemathesis.pytest.from_fixture`` plugin: the schema is only known once the
API fixture has started, and the lazy-fixture plugin fails on this pytest (``Function._nodeid``).
"""

from __future__ import annotations

import collections
import io
import json
import os
import re
import time
import uuid

import httpx
import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from safetensors.torch import save as save_safetensors
from schemathesis import GenerationMode, checks

from tests.helpers import FAST_ARCH, FAST_RECIPE, bearer, new_api_key, wait_job
from workers.engine.architectures import build_model

pytestmark = pytest.mark.integration

# Cases per operation, mode and pass (~35 operations x 2 modes x 2 passes, ~1,200 requests: about
# 15 s on 2 cores). A deeper local run: UNLEARND_FUZZ_EXAMPLES=200 pytest tests/integration/test_schema_fuzz.py
EXAMPLES = int(os.environ.get("UNLEARND_FUZZ_EXAMPLES", "20"))
# Operations that create things get fewer: their ids are pointed at nothing (see _point_at_nothing).
FEWER = {"POST /v1/models", "POST /v1/forget-requests", "POST /v1/datasets", "POST /v1/api-keys"}
ERROR_STATUSES = {401, 403, 404, 405, 409, 410, 413, 422}
NOWHERE = str(uuid.UUID(int=0))  # a dataset / model id that never exists
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
STATS: collections.Counter = collections.Counter()  # (operation, status) -> count, printed with -s


@pytest.fixture(scope="module")
def fuzz(api_url) -> dict:
    """A tenant of the fuzzer's own (what it creates is invisible to the other tests, and no id it
    finds in a listing belongs to them: it cannot revoke the suite's admin key), with one of each
    resource for the second pass."""
    key = new_api_key("fuzz", ["admin"], name="schemathesis")
    spare_key = new_api_key("fuzz", ["models:read"], name="revoke-me")
    with httpx.Client(base_url=api_url, headers=bearer(key), timeout=60) as c:
        dataset = c.post("/v1/datasets", data={"builtin": "digits", "name": "fuzz-digits"}).json()
        torch.manual_seed(0)
        net = build_model(FAST_ARCH["architecture"], FAST_ARCH["config"], (8, 8), 10)
        weights = save_safetensors({k: v.contiguous() for k, v in net.state_dict().items()})
        spec = {"name": "fuzz-model", "dataset_id": dataset["id"], **FAST_ARCH, "recipe": FAST_RECIPE}
        model = c.post(
            "/v1/models/upload", data={"spec": json.dumps(spec)}, files={"weights": ("w.safetensors", weights)}
        ).json()
        # one small real job (a 1-epoch finetune of a tiny model), for the job and certificate routes
        request = c.post(
            "/v1/forget-requests",
            json={
                "request_id": "fuzz-1",
                "model_id": model["id"],
                "scope": {"class_labels": [3]},
                "method": "finetune",
                "params": {"epochs": 1},
            },
        ).json()
        job = wait_job(c, request["jobs"][0]["id"])  # finished: batches, a certificate, a retired v1
        assert job["state"] == "SUCCEEDED", job
        key_id = next(k["id"] for k in c.get("/v1/api-keys").json()["items"] if k["name"] == "revoke-me")
    assert spare_key
    ids = {
        "dataset_id": dataset["id"],
        "model_id": model["id"],
        "forget_request_id": request["id"],
        "job_id": request["jobs"][0]["id"],
        "key_id": key_id,
    }
    return {"headers": bearer(key), "ids": ids}


def _point_at_nothing(case) -> None:
    """A generated model spec or forget request is at most a 404: never a training run or a job."""
    if not isinstance(case.body, dict):
        return
    if case.operation.path == "/v1/models" and "dataset_id" in case.body:
        case.body["dataset_id"] = NOWHERE
    if case.operation.path == "/v1/forget-requests" and "model_id" in case.body:
        case.body["model_id"] = NOWHERE


def _check(case, response) -> None:
    __tracebackhide__ = True
    status = response.status_code
    if status >= 400:  # (a 2xx body may be a binary checkpoint: no .text unless something failed)
        where = f"\n{case.as_curl_command()}\n-> {status} {response.text[:1500]}"
        assert status < 500, f"server error{where}"
        ctype = response.headers.get("content-type", [""])[0]  # schemathesis: header -> list of values
        assert ctype.startswith("application/problem+json"), f"not problem+json ({ctype}){where}"
        body = response.json()
        assert body["status"] == status and body["type"].startswith("/problems/") and body["title"], where
        assert status in ERROR_STATUSES, f"unexpected status{where}"
        assert body["type"] != "/problems/unstorable-value", f"reached the database unvalidated{where}"
    case.validate_response(response, checks=CHECKS)


def _fuzz(operation, mode: GenerationMode, base_url: str, headers: dict, path_ids: dict) -> str | None:
    """Run one operation in one mode; the first failure (shrunk by Hypothesis), or None."""
    examples = max(2, EXAMPLES // 2) if operation.label in FEWER else EXAMPLES

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_ids or None))
    def run(case):
        _point_at_nothing(case)
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        STATS[(operation.label, response.status_code)] += 1
        _check(case, response)

    try:
        run()
    except Unsatisfiable:  # nothing to get wrong: no parameters, so no invalid request exists
        return None
    except Exception as exc:  # an assertion, a schemathesis check failure, or an unusable strategy
        return f"{operation.label} [{mode.value}{', real ids' if path_ids else ''}]: {type(exc).__name__}: {exc}"
    return None


def test_no_generated_input_causes_a_server_error(api_url, fuzz):
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json", config=config)
    started, failures, operations = time.monotonic(), [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        names = re.findall(r"{(\w+)}", operation.path)
        real = {n: fuzz["ids"][n] for n in names if n in fuzz["ids"]}
        for path_ids in ({}, real) if real else ({},):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                failure = _fuzz(operation, mode, api_url, fuzz["headers"], path_ids)
                if failure:
                    failures.append(failure)
    elapsed = time.monotonic() - started
    report = io.StringIO()
    for (label, status), n in sorted(STATS.items()):
        print(f"{label:60} {status} x{n}", file=report)
    print(f"schema fuzz: {operations} operations, {sum(STATS.values())} requests, {elapsed:.0f} s\n{report.getvalue()}")
    assert operations >= 30, operations
    assert not failures, f"{len(failures)} failures in {elapsed:.0f} s:\n\n" + "\n\n".join(failures)
    # nothing it sent broke the API or revoked the fuzzer's own key
    assert httpx.get(f"{api_url}/v1/api-keys", headers=fuzz["headers"]).status_code == 200
