"""The Python client and the client commands of `unlearnd` against the real stack: register data and
a model, forget, follow the request to its end, download the checkpoint with its sha256 checked,
verify the certificate, walk cursor pages, and read problems as typed errors."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from app.cli import cli
from tests.client_support import TEST_RETRY, upload_fast_model
from unlearnd_client import ApiError, Client, Outcome
from unlearnd_client.cli import exit_codes
from unlearnd_client.resources.models import Models

pytestmark = pytest.mark.integration
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def sdk(api_url, admin_key):
    with Client(api_url, admin_key, retry=TEST_RETRY) as client:
        yield client


@pytest.fixture(scope="module")
def model(sdk):
    dataset = sdk.datasets.add(builtin="digits", name="client-digits")  # its own copy: erasures tombstone rows
    assert dataset.format == "arrays" and dataset.num_rows > 1000 and 3 in dataset.classes
    uploaded = upload_fast_model(sdk, dataset.id)
    assert uploaded.state == "READY" and uploaded.head_version == 1
    return uploaded


@pytest.fixture(scope="module")
def forgotten(sdk, model):
    """Class 3 forgotten by retrain through the client, followed to its end; with every snapshot seen."""
    submitted = sdk.forget_requests.submit(model.id, class_labels=[3], method="retrain")
    assert submitted.state == "QUEUED" and len(submitted.idempotency_key) == 32 and not submitted.replayed
    seen = []
    final = sdk.wait(submitted.id, timeout_s=120, on_progress=seen.append)
    return submitted, final, seen


def test_wait_returns_the_final_state_and_reports_each_change_once(forgotten):
    submitted, final, seen = forgotten
    assert final.id == submitted.id and final.state == "SUCCEEDED", final
    assert final.outcome is Outcome.COMPLETED and final.job.guarantee == "exact"
    assert (final.job.source_version, final.job.result_version) == (1, 2)
    assert seen[-1].state == "SUCCEEDED" and all(not s.finished for s in seen[:-1])
    steps = [(s.state, s.job.state, s.job.progress.phase, s.job.progress.step) for s in seen]
    assert len(steps) == len(set(steps)) >= 1  # a change is reported once, however often it was polled


def test_download_checks_the_sha256_the_api_reports(sdk, model, forgotten, tmp_path):
    _, final, _ = forgotten
    target = tmp_path / "v2.safetensors"
    done = sdk.models.download(model.id, target, version=final.job.result_version)
    data = target.read_bytes()
    reported = sdk.models.version(model.id, 2)
    assert done.sha256 == hashlib.sha256(data).hexdigest() == reported.sha256
    assert done.size_bytes == len(data) == reported.size_bytes > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["v2.safetensors"]  # no .part left behind


def test_certificate_is_fetched_and_verified(sdk, forgotten):
    _, final, _ = forgotten
    document = sdk.certificates.get(final.id)
    assert document["certificate"]["result_version"]["sha256"] == sdk.models.version(final.model_id, 2).sha256
    result = sdk.certificates.verify(document)
    assert result.ok and result.guarantee == "exact", result.reason
    document["certificate"]["claim"] += " (edited)"
    assert not sdk.certificates.verify(document).ok


def test_cursor_pages_are_walked_as_one_iterator(sdk, client, model, forgotten):
    one_page = client.get("/v1/audit-events", params={"model_id": model.id, "page_size": 500}).json()
    walked = [e.seq for e in sdk.audit.search(model_id=model.id, page_size=2)]
    expected = [e["seq"] for e in one_page["items"]]
    assert one_page["next_page_token"] is None and len(expected) >= 6  # so 3 pages of 2 and more
    assert walked[: len(expected)] == expected  # (an event the worker adds meanwhile may follow)
    _, final, _ = forgotten
    batches = list(sdk.jobs.batches(final.job.id, page_size=7))
    assert [b.step for b in batches] == list(range(1, final.job.metrics["steps"] + 1))


def test_a_problem_is_a_typed_error(sdk, model):
    with pytest.raises(ApiError) as raised:
        sdk.forget_requests.submit(model.id, sample_ids=["nobody-1"], method="retrain")
    error = raised.value
    assert (error.status, error.type) == (422, "/problems/unknown-sample-ids")
    assert error.title and "nothing was queued" in error.detail
    assert error.extensions["unknown_sample_ids"] == ["nobody-1"]
    with pytest.raises(ApiError) as missing:
        sdk.forget_requests.get("00000000-0000-0000-0000-000000000000")
    assert (missing.value.status, missing.value.type) == (404, "/problems/not-found")


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(api_url, admin_key):
    runner = CliRunner()
    env = {"UNLEARND_URL": api_url, "UNLEARND_KEY": admin_key}
    return lambda *args: runner.invoke(cli, [str(a) for a in args], env=env)


def test_cli_forget_wait_json_exits_0_with_the_final_state(run, model, forgotten):
    result = run("forget", "--model", model.name, "--classes", "5", "--method", "retrain", "--wait", "--json")
    assert result.exit_code == exit_codes.OK, result.output
    body = json.loads(result.stdout)
    assert body["state"] == "SUCCEEDED" and body["outcome"] == "completed" and body["model_id"] == model.id
    assert body["jobs"][-1]["result_version"] == body["jobs"][-1]["source_version"] + 1
    assert "[SUCCEEDED] retrain" in result.stderr and "step" in result.stderr  # the progress display

    shown = run("requests", "show", body["id"], "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["state"] == "SUCCEEDED"
    verified = run("certificate", "verify", body["id"])
    assert verified.exit_code == 0 and verified.stdout.startswith("valid: "), verified.output


def test_cli_download_checks_the_sha256(run, sdk, model, tmp_path, monkeypatch):
    head = sdk.models.get(model.id).head_version  # earlier erasures retired the versions before it
    good = tmp_path / "good.safetensors"
    result = run("download", model.name, "-o", good, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == head
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert hashlib.sha256(good.read_bytes()).hexdigest() == sdk.models.version(model.id, head).sha256

    real_version = Models.version

    def tampered(self, model_id, version):  # the API "reports" another sha256 for the version
        return real_version(self, model_id, version).model_copy(update={"sha256": "0" * 64})

    monkeypatch.setattr(Models, "version", tampered)
    bad = tmp_path / "bad.safetensors"
    result = run("download", f"{model.id}@{head}", "-o", bad)
    assert result.exit_code == exit_codes.CHECK_FAILED, result.output
    assert "sha256 mismatch" in result.stderr
    assert not bad.exists() and not (tmp_path / "bad.safetensors.part").exists()


def test_cli_usage_and_api_errors_have_their_own_exit_codes(run, model):
    neither = run("forget", "--model", model.id)
    assert neither.exit_code == exit_codes.USAGE and "exactly one of --samples" in neither.output
    unknown = run("requests", "show", "00000000-0000-0000-0000-000000000000", "--json")
    assert unknown.exit_code == exit_codes.API_ERROR
    assert json.loads(unknown.stderr)["type"] == "/problems/not-found"
