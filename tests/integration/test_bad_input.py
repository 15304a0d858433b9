"""Bad input, over HTTP: every kind gets a 422 (or 413) problem+json that names what was wrong, and
nothing stored changes (rows of the tenant's tables, files in the artifact store).

Covers what the other validation tests do not: the text policy of app/core/validation.py (control,
invisible-format and bidi characters, surrogates, path separators, NFC), bodies that are not JSON
objects at all, wrong types and out-of-range numbers in paths and queries, forged page tokens, the
per-request ID limit, and uploads that are really pickles (never unpickled: a marker file proves it).
"""

from __future__ import annotations

import base64
import io
import json
import pathlib
import pickle
import struct
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors
from sqlalchemy import text

from tests.helpers import FAST_ARCH, FAST_RECIPE, assert_problem, bearer, new_api_key, train_ids
from tests.processes import start_api
from tests.services import free_port
from workers.engine.architectures import build_model

pytestmark = pytest.mark.integration

TENANT = "bad-input"  # its own tenant: the row counts below see only what these tests do
NOWHERE = str(uuid.UUID(int=0))

COUNTS = {
    "datasets": "SELECT count(*) FROM datasets WHERE tenant_id = :t",
    "dataset_samples": "SELECT count(*) FROM dataset_samples s JOIN datasets d ON d.id = s.dataset_id "
    "WHERE d.tenant_id = :t",
    "models": "SELECT count(*) FROM models WHERE tenant_id = :t",
    "model_versions": "SELECT count(*) FROM model_versions v JOIN models m ON m.id = v.model_id WHERE m.tenant_id = :t",
    "forget_requests": "SELECT count(*) FROM forget_requests WHERE tenant_id = :t",
    "idempotency_keys": "SELECT count(*) FROM idempotency_keys WHERE tenant_id = :t",
    "jobs": "SELECT count(*) FROM jobs WHERE tenant_id = :t",
    "api_keys": "SELECT count(*) FROM api_keys WHERE tenant_id = :t",
    # chained or still in the inbox: the sequencer moves events from one to the other at any moment
    "audit_events": "SELECT (SELECT count(*) FROM audit_events WHERE tenant_id = :t) "
    "+ (SELECT count(*) FROM audit_inbox WHERE tenant_id = :t)",
}


class Marker:
    """Unpickling this creates ``path``: if the file ever exists, something unpickled user data."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.fixture(scope="module")
def bad(api_url) -> Iterator[httpx.Client]:
    key = new_api_key(TENANT, ["admin"], name="bad-input-tests")
    with httpx.Client(base_url=api_url, timeout=60, headers=bearer(key)) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(bad) -> dict:
    resp = bad.post("/v1/datasets", data={"builtin": "digits", "name": "digits"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _weights() -> bytes:
    torch.manual_seed(0)
    state = build_model(FAST_ARCH["architecture"], FAST_ARCH["config"], (8, 8), 10).state_dict()
    return save_safetensors({k: v.contiguous() for k, v in state.items()})


def _upload_model(client: httpx.Client, spec: dict, weights: bytes) -> httpx.Response:
    files = {"weights": ("w.safetensors", weights)}
    return client.post("/v1/models/upload", data={"spec": json.dumps(spec)}, files=files)


def _spec(dataset_id: str, name: str) -> dict:
    return {"name": name, "dataset_id": dataset_id, **FAST_ARCH, "recipe": FAST_RECIPE}


@pytest.fixture(scope="module")
def model(bad, dataset) -> dict:
    """Uploaded, not trained: no worker involved."""
    resp = _upload_model(bad, _spec(dataset["id"], "uploaded"), _weights())
    assert resp.status_code == 201, resp.text
    return resp.json()


REFERENCED_KEYS = (
    "SELECT artifact_key FROM model_versions UNION SELECT artifact_key FROM datasets "
    "UNION SELECT artifact_key FROM update_log_chunks"
)


def _other_jobs_settled(db, timeout_s: float = 60.0) -> None:
    """Wait for other tests' running jobs to commit: a job writes its checkpoint file just before the
    commit that records it, and that file is theirs, not a leftover of a rejected request."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        db.rollback()
        if not db.scalar(text("SELECT count(*) FROM jobs WHERE state IN ('RUNNING', 'VERIFYING')")):
            return
        time.sleep(0.2)


@pytest.fixture
def unchanged(db, stack_env):
    """``with unchanged(): ...``: no row of the tenant and no artifact file appears or disappears."""
    artifacts = pathlib.Path(stack_env["UNLEARND_ARTIFACT_DIR"])

    def snapshot():
        db.rollback()
        rows = {name: db.scalar(text(sql), {"t": TENANT}) for name, sql in COUNTS.items()}
        return rows, {p for p in artifacts.rglob("*") if p.is_file()}

    @contextmanager
    def check():
        rows, files = snapshot()
        yield
        _other_jobs_settled(db)
        rows_after, files_after = snapshot()
        assert rows_after == rows
        # other tests' jobs may finish meanwhile: a new file a row refers to is theirs
        referenced = {artifacts / key for key in db.scalars(text(REFERENCED_KEYS))}
        assert not files_after - files - referenced, "a rejected request left a file in the artifact store"

    return check


def _field_error(body: dict, field: str) -> dict:
    found = [e for e in body["errors"] if e["field"] == field]
    assert found, (field, body["errors"])
    return found[0]


BAD_NAMES = [
    ("nul\x00byte", "U+0000 NUL"),
    ("tab\there", "U+0009 TAB"),
    ("new\nline", "U+000A LINE FEED"),
    ("invoice\u202efdp.exe", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("isolate\u2067x", "U+2067 RIGHT-TO-LEFT ISOLATE"),
    ("zero\u200bwidth", "U+200B ZERO WIDTH SPACE"),
    ("\ufeffbom", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
    ("no\u00a0break", "U+00A0 NO-BREAK SPACE"),
    ("../etc/passwd", "path separator"),
    ("a\\b", "path separator"),
    ("..", "'.' or '..'"),
    (" leading", "start or end with a space"),
    ("trailing ", "start or end with a space"),
    ("x" * 201, "1-200 characters"),
]


def test_bad_names_are_refused_everywhere_naming_the_character(bad, dataset, unchanged):
    npz = io.BytesIO()
    np.savez(npz, ids=np.array(["a", "b", "c", "d"]), x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    with unchanged():
        for name, says in BAD_NAMES:
            answers = {
                "dataset": bad.post("/v1/datasets", data={"name": name}, files={"file": ("d.npz", npz.getvalue())}),
                "model": bad.post("/v1/models", json=_spec(NOWHERE, name)),
                "api key": bad.post("/v1/api-keys", json={"name": name, "scopes": ["models:read"]}),
                "model lookup": bad.get("/v1/models", params={"name": name}),
            }
            for where, resp in answers.items():
                body = assert_problem(resp, 422, "validation-error")
                field = "query.name" if where == "model lookup" else "body.name"
                error = _field_error(body, field)
                assert says in error["message"], (name, where, error)
                assert field in body["detail"]
        # an unpaired surrogate can only arrive as a JSON escape
        for path in ("/v1/models", "/v1/api-keys"):
            raw = b'{"name": "half\\ud800", "scopes": ["admin"], "dataset_id": "%s"}' % NOWHERE.encode()
            body = assert_problem(bad.post(path, content=raw, headers={"content-type": "application/json"}), 422)
            assert "U+D800" in _field_error(body, "body.name")["message"]


def test_ordinary_unicode_names_are_kept_in_nfc_and_unique_after_normalisation(bad, dataset, unchanged):
    nfd = unicodedata.normalize("NFD", f"Modèle-日本 é {uuid.uuid4().hex[:6]}")
    nfc = unicodedata.normalize("NFC", nfd)
    assert nfd != nfc
    created = _upload_model(bad, _spec(dataset["id"], nfd), _weights())
    assert created.status_code == 201, created.text
    assert created.json()["name"] == nfc
    # the composed spelling is the same name: a 409, and ?name= finds it either way
    with unchanged():
        assert_problem(_upload_model(bad, _spec(dataset["id"], nfc), _weights()), 409, "conflict")
        assert_problem(bad.post("/v1/models", json=_spec(dataset["id"], nfd)), 409, "conflict")
    for spelling in (nfc, nfd):
        found = bad.get("/v1/models", params={"name": spelling}).json()["items"]
        assert [m["id"] for m in found] == [created.json()["id"]]
    key = bad.post("/v1/api-keys", json={"name": "Schlüssel ключ 鍵", "scopes": ["models:read"]})
    assert key.status_code == 201 and key.json()["name"] == "Schlüssel ключ 鍵"


def _forget(client, model_id: str, /, **overrides) -> httpx.Response:
    body = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "model_id": model_id,
        "scope": {"class_labels": [1]},
        "method": "retrain",
        **overrides,
    }
    return client.post("/v1/forget-requests", json=body)


def test_client_keys_sample_ids_and_subjects_refuse_invisible_characters(bad, model, unchanged):
    with unchanged():
        for request_id, says in [
            ("req\u202e1", "U+202E RIGHT-TO-LEFT OVERRIDE"),
            ("req\u200b1", "U+200B ZERO WIDTH SPACE"),
            ("req 1", "U+0020 SPACE"),
            ("réq-1", "U+00E9 LATIN SMALL LETTER E WITH ACUTE"),
            ("req\x001", "U+0000 NUL"),
            ("r" * 201, "1-200 characters"),
        ]:
            body = assert_problem(_forget(bad, model["id"], request_id=request_id), 422, "validation-error")
            assert says in _field_error(body, "body.retrain.request_id")["message"], request_id
        # header values travel as bytes; UTF-8 bytes arrive as Latin-1 characters, still not ASCII
        for raw in (b"key\xe2\x80\xae", b"caf\xc3\xa9", b"tab\tkey"):
            resp = bad.post(
                "/v1/forget-requests",
                content=json.dumps({"request_id": "r", "model_id": model["id"], "scope": {"class_labels": [1]}}),
                headers=[(b"content-type", b"application/json"), (b"idempotency-key", raw)],
            )
            body = assert_problem(resp, 422, "validation-error")
            assert "printable ASCII" in _field_error(body, "header.idempotency-key")["message"]
        for sample_id, says in [("digits-0001\x00", "U+0000 NUL"), ("\u202edigits-0001", "U+202E")]:
            resp = _forget(bad, model["id"], scope={"sample_ids": [*train_ids(n=2), sample_id]})
            body = assert_problem(resp, 422, "validation-error")
            assert says in _field_error(body, "body.retrain.scope.sample_ids.2")["message"]
        resp = _forget(bad, model["id"], method="finetune", subject="alice\x00@example.com")
        assert "U+0000 NUL" in _field_error(assert_problem(resp, 422), "body.finetune.subject")["message"]
        raw = json.dumps(
            {"request_id": "r", "model_id": model["id"], "scope": {"sample_ids": ["x"]}, "method": "retrain"}
        )
        raw = raw.replace('"x"', '"x\\udfff"').encode()
        resp = bad.post("/v1/forget-requests", content=raw, headers={"content-type": "application/json"})
        assert (
            "unpaired surrogate"
            in _field_error(assert_problem(resp, 422), "body.retrain.scope.sample_ids.0")["message"]
        )
        # a layer name is a dotted torch module name; one the model does not have is named at once
        resp = _forget(bad, model["id"], method="gradient_ascent", params={"layers": ["fc\x00"]})
        assert _field_error(assert_problem(resp, 422), "body.gradient_ascent.params.layers.0")
        body = assert_problem(_forget(bad, model["id"], method="gradient_ascent", params={"layers": ["fc9"]}), 422)
        assert body["unknown_layers"] == ["fc9"] and "fc2" in body["detail"]


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("content", "headers", "says"),
    [
        (b'{"request_id": "r", "scope": {', JSON, "JSON"),
        (b'{"request_id": "\xff\xfe"}', JSON, "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, JSON, "nested too deeply"),
        (b'{"request_id": ' + b"9" * 5000 + b"}", JSON, "could not be parsed"),
        (b'[{"request_id": "r"}]', JSON, "valid dictionary"),
        (b"null", JSON, "valid dictionary"),
        (b'"a string"', JSON, "valid dictionary"),
        (b"", JSON, "Field required"),
        (b'{"request_id": "r"}', {"content-type": "text/plain"}, "valid dictionary"),
        (b"request_id=r&model_id=x", {"content-type": "application/x-www-form-urlencoded"}, "valid dictionary"),
    ],
    ids=[
        "truncated",
        "not-utf8",
        "nested-100k-deep",
        "5000-digit-number",
        "top-level-array",
        "null",
        "string",
        "empty",
        "text-plain",
        "form-encoded",
    ],
)
def test_bodies_that_are_not_a_json_object_are_422(bad, unchanged, content, headers, says):
    with unchanged():
        body = assert_problem(
            bad.post("/v1/forget-requests", content=content, headers=headers), 422, "validation-error"
        )
    assert body["errors"] and all(e["field"].startswith("body") for e in body["errors"]), body
    assert says in body["detail"], body["detail"]


def test_broken_multipart_bodies_are_422(bad, unchanged):
    with unchanged():
        for content_type in ("multipart/form-data", "multipart/form-data; boundary=zz"):
            resp = bad.post("/v1/datasets", content=b"--zz\r\ngarbage", headers={"content-type": content_type})
            assert_problem(resp, 422, "validation-error")


def test_wrong_types_and_out_of_range_numbers_name_the_parameter(bad, model, unchanged):
    mid, big = model["id"], 2**70
    cases = [
        (f"/v1/models/{mid}/versions/{big}", {}, "path.version"),
        (f"/v1/models/{mid}/versions/0", {}, "path.version"),
        (f"/v1/models/{mid}/versions/one", {}, "path.version"),
        (f"/v1/models/{mid}/versions/{big}/checkpoint", {}, "path.version"),
        (f"/v1/jobs/{NOWHERE}/batches", {"attempt": big}, "query.attempt"),
        ("/v1/audit-events/verify", {"from_seq": big}, "query.from_seq"),
        ("/v1/audit-events/export", {"to_seq": -1}, "query.to_seq"),
        ("/v1/audit-events", {"page_size": "ten"}, "query.page_size"),
        ("/v1/audit-events", {"page_size": 10**6}, "query.page_size"),
        ("/v1/audit-events", {"action": "job.\x00queued"}, "query.action"),
        ("/v1/audit-events", {"since": "2024-05-01T10:00:00"}, "query.since"),  # no time zone
        ("/v1/audit-events", {"until": "9999-12-31T23:59:59-23:59"}, "query.until"),  # past year 9999 in UTC
        ("/v1/forget-requests", {"overdue": "maybe"}, "query.overdue"),
        ("/v1/forget-requests", {"due_before": "0001-01-01T00:00:00+14:00"}, "query.due_before"),
        ("/v1/forget-requests", {"model_id": "not-a-uuid"}, "query.model_id"),
        ("/v1/models", {"name": "a/b"}, "query.name"),
    ]
    with unchanged():
        for path, params, field in cases:
            body = assert_problem(bad.get(path, params=params), 422, "validation-error")
            assert _field_error(body, field), (path, params)
        for body_json, field in [
            ({"scope": {"class_labels": "all"}}, "body.retrain.scope.class_labels"),
            ({"scope": {"class_labels": [1.5]}}, "body.retrain.scope.class_labels.0"),
            ({"scope": {"class_labels": [-1]}}, "body.retrain.scope.class_labels.0"),
            ({"model_id": 12345}, "body.retrain.model_id"),
            ({"method": "finetune", "params": {"epochs": 10**30}}, "body.finetune.params.epochs"),
            ({"method": "finetune", "params": {"lr": "fast"}}, "body.finetune.params.lr"),
            ({"regulation": ["gdpr"]}, "body.retrain.regulation"),
        ]:
            body = assert_problem(_forget(bad, model["id"], **body_json), 422, "validation-error")
            assert _field_error(body, field), body_json
        # huge class labels are numbers like any other: not in the dataset
        body = assert_problem(_forget(bad, model["id"], scope={"class_labels": [2**70]}), 422)
        assert body["unknown_class_labels"] == [2**70]
        for nan in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
            raw = b'{"request_id": "r", "model_id": "%s", "scope": {"class_labels": [1]}, "method": "finetune", '
            raw = raw % mid.encode() + b'"params": {"lr": ' + nan + b"}}"
            body = assert_problem(bad.post("/v1/forget-requests", content=raw, headers=JSON), 422)
            assert _field_error(body, "body.finetune.params.lr")


def _token(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_forged_page_tokens_are_422(bad, model, unchanged):
    forged = [["abc"], [{"a": 1}], [2**70], [1.5], [-1], [None], "not a list"]
    with unchanged():
        for path in ("/v1/audit-events", f"/v1/models/{model['id']}/versions", "/v1/jobs", "/v1/datasets"):
            for value in forged:
                body = assert_problem(bad.get(path, params={"page_token": _token(value)}), 422, "validation-error")
                assert "page_token" in body["detail"], (path, value)


def test_too_many_ids_and_too_large_uploads_state_the_limit(stack_env, bad, model, dataset, unchanged, tmp_path):
    from tests.conftest import _process_env

    env = {**_process_env(stack_env), "UNLEARND_MAX_IDS_PER_REQUEST": "5", "UNLEARND_MAX_UPLOAD_BYTES": "8192"}
    port = free_port()
    api = start_api(env, port, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=bad.headers) as small, unchanged():
            resp = _forget(small, model["id"], scope={"sample_ids": train_ids(n=6)})
            body = assert_problem(resp, 422, "validation-error")
            assert "6 sample IDs" in body["detail"] and "the limit is 5" in body["detail"]
            assert "UNLEARND_MAX_IDS_PER_REQUEST" in body["detail"]
            # at the limit the IDs are checked one by one (these five are not in the dataset)
            resp = _forget(small, model["id"], scope={"sample_ids": [f"nobody-{i}" for i in range(5)]})
            assert assert_problem(resp, 422, "unknown-sample-ids")["unknown_count"] == 5
            weights = _weights()
            assert len(weights) > 8192
            body = assert_problem(
                _upload_model(small, _spec(dataset["id"], "too-big"), weights), 413, "payload-too-large"
            )
            assert body["limit_bytes"] == 8192
    finally:
        api.stop()


def _armed(payload_for, tmp_path: pathlib.Path, load) -> None:
    """The payload really runs code when unpickled: loading a twin of it here creates its marker."""
    twin = tmp_path / f"armed-{uuid.uuid4().hex}"
    load(payload_for(twin))
    assert twin.exists()


def _torch_pickle(path: pathlib.Path, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    state = {"conv1.weight": Marker(path), "fc2.bias": torch.zeros(10)}
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def test_weights_that_are_pickles_or_garbage_are_422_and_never_unpickled(bad, dataset, unchanged, tmp_path):
    marker = tmp_path / "unpickled-weights"
    _armed(_torch_pickle, tmp_path, lambda data: torch.load(io.BytesIO(data), weights_only=False))
    _armed(lambda p: pickle.dumps(Marker(p)), tmp_path, pickle.loads)
    real = _weights()
    header_len = struct.unpack("<Q", real[:8])[0]
    payloads = {
        "torch.save (zip)": _torch_pickle(marker),
        "torch.save (legacy)": _torch_pickle(marker, legacy=True),
        "raw pickle": pickle.dumps(Marker(marker), protocol=2),
        "pickle protocol 5": pickle.dumps({"conv1.weight": Marker(marker)}, protocol=5),
        "garbage": bytes(range(256)) * 4,
        "header length 2**63": struct.pack("<Q", 2**63) + b"{}",
        "header not JSON": struct.pack("<Q", 8) + b"not json",
        "header a list": struct.pack("<Q", 2) + b"[]",
        "truncated tensors": real[: 8 + header_len + 100],
        "zip of a safetensors": _zip({"w.safetensors": real}),
    }
    with unchanged():
        for what, data in payloads.items():
            body = assert_problem(_upload_model(bad, _spec(dataset["id"], "pickled"), data), 422, "invalid-weights")
            assert body["detail"], what
    assert not marker.exists(), "an uploaded pickle was unpickled"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy_member(header: bytes, data: bytes) -> bytes:
    magic = b"\x93NUMPY\x01\x00"
    header += b" " * (-(len(magic) + 2 + len(header) + 1) % 64) + b"\n"
    return magic + struct.pack("<H", len(header)) + header + data


def test_npz_uploads_with_pickled_or_lying_arrays_are_422_and_never_unpickled(bad, unchanged, tmp_path):
    marker = tmp_path / "unpickled-npz"
    ids, x, y = np.array(["a", "b", "c", "d"]), np.zeros((4, 2), dtype=np.float32), np.array([0, 1, 0, 1])

    def pickled_ids(path):
        return _npz(ids=np.array([Marker(path), "b", "c", "d"], dtype=object), x=x, y=y)

    _armed(pickled_ids, tmp_path, lambda data: np.load(io.BytesIO(data), allow_pickle=True)["ids"])
    good = _npz(ids=ids, x=x, y=y)
    compressed = io.BytesIO()
    np.savez_compressed(compressed, ids=ids, x=np.random.default_rng(0).random((4, 512)), y=y)
    corrupt = bytearray(compressed.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(corrupt))).getinfo("x.npy")
    corrupt[info.header_offset + 30 + len(info.filename) + len(info.extra) + 200] ^= 0xFF
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        members = {n: zf.read(n) for n in ("ids.npy", "y.npy")}
    lying = {
        **members,
        "x.npy": _npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 2), }", b"\0" * 32),
    }
    payloads = {
        "object ids (pickle)": pickled_ids(marker),
        "object x (pickle)": _npz(ids=ids, x=np.array([[Marker(marker)] * 2] * 4, dtype=object), y=y),
        "pickled dict as .npz": pickle.dumps({"ids": Marker(marker)}),
        "bad CRC / deflate stream": bytes(corrupt),
        "header declares 800 GB": _zip(lying),
        "x without columns": _npz(ids=ids, x=np.zeros((4, 0)), y=y),
    }
    with unchanged():
        for what, data in payloads.items():
            resp = bad.post("/v1/datasets", data={"name": "npz"}, files={"file": ("d.npz", data)})
            body = assert_problem(resp, 422, "invalid-dataset")
            assert body["detail"], what
    assert not marker.exists(), "an uploaded .npz was unpickled"
