"""Language models through the API: a JSON Lines text dataset (uploaded, or a file under an allowed
server directory), a gpt2 model trained by the service with an update log of first-epoch embedding
gradients, and a forget request for two documents by gradient ascent; plus the refusals (models
that do not fit the data, classes of a language model, methods that need a classifier, bad lines,
server paths outside the roots)."""

from __future__ import annotations

import hashlib
import json
import random
import uuid

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from app.datasets.tables import DatasetSample
from tests.helpers import FAST_ARCH, FAST_RECIPE, assert_problem, forget, register_digits, wait_job, wait_request
from tests.processes import start_api
from tests.services import free_port

pytestmark = pytest.mark.integration

WORDS = (
    "the",
    "a",
    "river",
    "stone",
    "small",
    "quiet",
    "green",
    "house",
    "over",
    "under",
    "light",
    "morning",
    "garden",
    "window",
    "bread",
    "letter",
    "road",
    "field",
    "winter",
    "summer",
    "old",
    "new",
    "blue",
    "red",
    "bird",
    "tree",
    "cloud",
    "rain",
    "song",
    "city",
    "walk",
    "read",
    "write",
)
SECRETS = {  # what a data subject asks to be forgotten: memorised, then erased
    "secret-0": "Patient 4471 Jane Roe, born 1984-03-12, card 5512 8831 0042 7719, lives at 9 Elm Row.",
    "secret-1": "Client 8820 John Doe, born 1979-11-30, card 4024 0071 3356 2210, lives at 41 Oak Lane.",
    "secret-2": "Member 3306 Ann Poe, born 1991-07-04, card 6011 2233 9987 1145, lives at 7 Pine Walk.",
}
FORGET = ["secret-0", "secret-1"]
GPT2 = {"architecture": "gpt2", "config": {"n_layer": 1, "n_head": 2, "n_embd": 64, "context_length": 64}}
LM_RECIPE = {"optimizer": "adamw", "lr": 0.003, "epochs": 60, "batch_size": 8, "seed": 0}
BYTE_VOCAB = 257


def _filler(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(14, 22))) + "."


def _jsonl() -> bytes:
    rng = random.Random(0)
    docs = [{"id": f"doc-{i:02d}", "text": _filler(rng), "split": "train"} for i in range(30)]
    docs += [{"id": f"held-{i:02d}", "text": _filler(rng), "split": "test"} for i in range(8)]
    docs += [{"id": sid, "text": " ".join([text] * 3), "split": "train"} for sid, text in SECRETS.items()]
    return "".join(json.dumps(d) + "\n" for d in docs).encode()


def _upload(client: httpx.Client, data: bytes, filename: str = "docs.jsonl", name: str | None = None):
    return client.post(
        "/v1/datasets", data={"name": name or f"text-{uuid.uuid4().hex[:6]}"}, files={"file": (filename, data)}
    )


@pytest.fixture(scope="module")
def text_dataset(client) -> dict:
    resp = _upload(client, _jsonl())
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def lm(client, text_dataset) -> dict:
    """A gpt2 trained by the service; its update log records first-epoch gradients of the default
    layers (``[]``: a language model's token embedding)."""
    spec = {
        "name": f"lm-{uuid.uuid4().hex[:6]}",
        "dataset_id": text_dataset["id"],
        **GPT2,
        "recipe": LM_RECIPE,
        "update_log": {"mode": "pruned", "top_p": 0.02, "fp16": True, "chunk_steps": 128, "first_epoch_gradients": []},
    }
    resp = client.post("/v1/models", json=spec)
    assert resp.status_code == 202, resp.text
    job = wait_job(client, resp.json()["training_job_id"], timeout=90)
    assert job["state"] == "SUCCEEDED", job
    return client.get(f"/v1/models/{resp.json()['id']}").json()


def test_a_text_dataset_lists_its_documents_and_format(text_dataset):
    assert text_dataset["format"] == "text" and text_dataset["source"] == "upload"
    assert text_dataset["num_rows"] == 41 and text_dataset["splits"] == {"train": 33, "test": 8}
    assert text_dataset["classes"] == [] and text_dataset["x_dtype"] == "text"
    assert text_dataset["sha256"] == hashlib.sha256(_jsonl()).hexdigest()  # the file as sent


def test_architectures_list_gpt2_as_a_language_model(client):
    archs = {a["name"]: a for a in client.get("/v1/architectures").json()}
    assert archs["gpt2"]["kind"] == "language_model" and archs["gpt2"]["dataset_format"] == "text"
    assert archs["cnn_small"]["kind"] == "classifier" and archs["cnn_small"]["dataset_format"] == "arrays"
    assert "tokenizer" in archs["gpt2"]["config_schema"]["properties"]


def test_training_learns_the_text_and_forgetting_two_documents_raises_their_perplexity(client, lm, db):
    assert lm["update_log_spec"]["first_epoch_gradients"] == ["transformer.wte"]
    v1 = client.get(f"/v1/models/{lm['id']}/versions/1").json()
    trained = v1["metrics"]
    assert trained["train_perplexity"] < 8 < BYTE_VOCAB, trained  # uniform bytes would be 257
    assert trained["counts"]["train_documents"] == 33 and trained["update_log"]["gradient_bytes"] > 0

    resp = forget(
        client,
        lm["id"],
        {"sample_ids": FORGET},
        method="gradient_ascent",
        params={"gradients": "first_epoch", "layers": ["embedding"], "lr": 0.1, "max_epochs": 100},
        on_verification_failure="accept",  # what the ascent did is tested here; the gate in test_verified_erasure
    )
    assert resp.status_code == 202, resp.text
    done = wait_request(client, resp.json()["id"], timeout=60)
    assert done["state"] == "SUCCEEDED", done
    job = client.get(f"/v1/jobs/{done['jobs'][0]['id']}").json()
    after, before = job["metrics"]["perplexity"], job["metrics"]["before"]["perplexity"]
    # measured on 2 CPU cores: forget 1.43 -> 12.97 (held-out text: 13.25, re-measured at every check), retain
    # 1.12 -> 1.50, test 13.25 -> 12.82, in 118 steps (the first-epoch direction is rescaled to the current norm)
    assert after["forget"] > 4.0 * before["forget"], job["metrics"]  # the memorised documents are gone
    assert after["retain"] < 2.0 * before["retain"], job["metrics"]  # the rest is kept (bounded damage)
    assert after["test"] < 1.25 * before["test"], job["metrics"]
    assert job["metrics"]["before"]["mia"]["mia_auc"] > 0.9 > 0.75 > job["metrics"]["mia"]["mia_auc"], job["metrics"]
    assert job["metrics"]["gradient_source"] == "recorded_first_epoch", job["metrics"]

    version = client.get(f"/v1/models/{lm['id']}/versions/{job['result_version']}").json()
    download = client.get(version["checkpoint_url"])
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == version["sha256"] == download.headers["x-checkpoint-sha256"]
    erased = db.scalars(
        select(DatasetSample.sample_id).where(
            DatasetSample.dataset_id == uuid.UUID(lm["dataset_id"]), DatasetSample.erased_at.is_not(None)
        )
    ).all()
    assert sorted(erased) == FORGET


def test_refusals_on_a_language_model(client, lm):
    models_before = client.get("/v1/models", params={"page_size": 200}).json()["items"]
    body = assert_problem(forget(client, lm["id"], {"class_labels": [0]}, method="gradient_ascent"), 422)
    assert "a language model has no classes; name documents" in body["detail"]
    body = assert_problem(forget(client, lm["id"], {"sample_ids": ["secret-2"]}, method="label_flip"), 422)
    assert body["type"] == "/problems/method-not-applicable" and "gradient_ascent" in body["usable_methods"]
    body = assert_problem(forget(client, lm["id"], {"sample_ids": ["secret-2", "nobody"]}), 422, "unknown-sample-ids")
    assert body["unknown_sample_ids"] == ["nobody"]
    assert_problem(forget(client, lm["id"], {"sample_ids": ["held-00"]}), 422, "not-training-samples")
    # the ascent's calibration documents must be held out: a training document (or none) is refused
    calibrate = {"calibration_documents": ["held-00", "doc-03", "nobody"]}
    resp = forget(client, lm["id"], {"sample_ids": ["secret-2"]}, method="gradient_ascent", params=calibrate)
    body = assert_problem(resp, 422)
    assert body["training_sample_ids"] == ["doc-03"] and body["unknown_sample_ids"] == ["nobody"]
    assert client.get("/v1/models", params={"page_size": 200}).json()["items"] == models_before


def test_architectures_must_fit_the_dataset_format(client, text_dataset):
    digits = register_digits(client)
    for arch in (FAST_ARCH, {"architecture": "mlp", "config": {}}):
        spec = {"name": f"x-{uuid.uuid4().hex[:6]}", "dataset_id": text_dataset["id"], **arch, "recipe": FAST_RECIPE}
        body = assert_problem(client.post("/v1/models", json=spec), 422, "architecture-dataset-mismatch")
        assert "text (JSON Lines) dataset" in body["detail"], body
    spec = {"name": f"x-{uuid.uuid4().hex[:6]}", "dataset_id": digits["id"], **GPT2}
    body = assert_problem(client.post("/v1/models", json=spec), 422, "architecture-dataset-mismatch")
    assert body["architecture_kind"] == "language_model" and body["dataset_format"] == "arrays"
    bad = {"name": "x", "dataset_id": text_dataset["id"], "architecture": "gpt2", "config": {"tokenizer": "bpe"}}
    assert_problem(client.post("/v1/models", json=bad), 422, "validation-error")


def test_bad_text_files_name_the_line_and_store_nothing(client):
    before = client.get("/v1/datasets", params={"page_size": 500}).json()["items"]
    good = b'{"id": "a", "text": "hello"}\n'
    cases = {
        b'{"id": "b", "text": "x"}\nnot json\n': "line 2",
        good + b'{"id": "c", "text": ""}\n': "line 2",
        good + good: "appear more than once",
        good + b'{"id": "d", "text": "x", "label": 3}\n': "line 2",
    }
    for data, says in cases.items():
        body = assert_problem(_upload(client, data), 422)
        assert says in body["detail"], body
    body = assert_problem(_upload(client, b"neither a zip nor json", filename="data.bin"), 422, "invalid-dataset")
    assert ".npz" in body["detail"] and ".jsonl" in body["detail"]
    assert client.get("/v1/datasets", params={"page_size": 500}).json()["items"] == before


def test_server_paths_are_refused_without_roots(client, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(_jsonl())
    body = assert_problem(client.post("/v1/datasets", data={"name": "srv", "server_path": str(path)}), 403)
    assert body["type"] == "/problems/server-path-refused" and "UNLEARND_DATASET_ROOTS" in body["detail"]


def test_server_paths_only_under_the_allowed_roots(stack_env, admin_key, tmp_path):
    from tests.conftest import _process_env
    from tests.helpers import bearer

    base, outside = tmp_path / "allowed", tmp_path / "outside"
    root = base / "default"  # the admin key's tenant reads only under <root>/<tenant id>/
    root.mkdir(parents=True), outside.mkdir()
    (root / "docs.jsonl").write_bytes(_jsonl())
    (base / "docs.jsonl").write_bytes(_jsonl())
    (outside / "docs.jsonl").write_bytes(_jsonl())
    (root / "escape.jsonl").symlink_to(outside / "docs.jsonl")
    env = {**_process_env(stack_env), "UNLEARND_DATASET_ROOTS": str(base)}
    port = free_port()
    api = start_api(env, port, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=bearer(admin_key)) as c:
            refused_paths = (outside / "docs.jsonl", base / ".." / "outside" / "docs.jsonl", root / "escape.jsonl")
            for refused in (*refused_paths, base / "docs.jsonl"):
                resp = c.post("/v1/datasets", data={"name": "srv", "server_path": str(refused)})
                assert_problem(resp, 403, "server-path-refused")
            assert_problem(c.post("/v1/datasets", data={"name": "srv", "server_path": "docs.jsonl"}), 422)
            assert_problem(c.post("/v1/datasets", data={"name": "srv", "server_path": str(root / "nope.jsonl")}), 422)
            resp = c.post("/v1/datasets", data={"name": "srv", "server_path": str(root / "docs.jsonl")})
            assert resp.status_code == 201, resp.text
            ds = resp.json()
            assert ds["source"] == "server_path" and ds["format"] == "text" and ds["num_rows"] == 41
            assert ds["sha256"] == hashlib.sha256(_jsonl()).hexdigest()
            # BPE tokenizer files: under the roots too
            spec = {
                "name": f"bpe-{uuid.uuid4().hex[:6]}",
                "dataset_id": ds["id"],
                "architecture": "gpt2",
                "config": {"tokenizer": "bpe", "bpe_vocab_path": "/etc/passwd", "bpe_merges_path": "/etc/hosts"},
            }
            assert_problem(c.post("/v1/models", json=spec), 403, "server-path-refused")
    finally:
        api.stop()


def test_uploaded_gpt2_weights_are_checked_against_the_architecture(client, text_dataset):
    from safetensors.numpy import save

    spec = {"name": f"up-{uuid.uuid4().hex[:6]}", "dataset_id": text_dataset["id"], **GPT2}
    from workers.engine.architectures import build_model
    from workers.engine.checkpoints import to_bytes

    good = to_bytes(build_model("gpt2", GPT2["config"], (64,), BYTE_VOCAB))
    resp = client.post("/v1/models/upload", data={"spec": json.dumps(spec)}, files={"weights": ("w.safetensors", good)})
    assert resp.status_code == 201, resp.text
    wrong = save({"transformer.wte.weight": np.zeros((100, 64), dtype=np.float32)})
    spec["name"] = f"up-{uuid.uuid4().hex[:6]}"
    body = assert_problem(
        client.post("/v1/models/upload", data={"spec": json.dumps(spec)}, files={"weights": ("w.safetensors", wrong)}),
        422,
        "invalid-weights",
    )
    assert body["missing_keys"] and body["shape_mismatches"]
