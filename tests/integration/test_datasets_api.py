"""Registering datasets: the built-in digits, uploads, and every way an upload can be wrong."""

from __future__ import annotations

import io
import uuid

import numpy as np

from tests.helpers import assert_problem, digits


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _upload(client, data: bytes, name: str = "upload"):
    return client.post("/v1/datasets", data={"name": name}, files={"file": ("data.npz", data)})


def test_builtin_digits(client):
    resp = client.post("/v1/datasets", data={"builtin": "digits"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["num_rows"] == 1797 and body["classes"] == list(range(10))
    assert body["splits"] == {"test": 360, "train": 1437} and body["input_shape"] == [8, 8]
    assert resp.headers["location"] == f"/v1/datasets/{body['id']}"
    assert client.get(f"/v1/datasets/{body['id']}").json() == body


def test_upload_with_and_without_split(client):
    rng = np.random.default_rng(0)
    ids = np.array([f"user-{i}" for i in range(200)])
    x, y = rng.random((200, 6)).astype(np.float32), rng.integers(0, 3, 200)
    resp = _upload(client, _npz(ids=ids, x=x, y=y, split=np.where(np.arange(200) < 150, "train", "test")))
    assert resp.status_code == 201, resp.text
    assert resp.json()["splits"] == {"train": 150, "test": 50} and resp.json()["input_shape"] == [6]
    derived = _upload(client, _npz(ids=ids, x=x, y=y)).json()  # no split: a stable 80/20 from the IDs
    assert derived["splits"]["train"] + derived["splits"]["test"] == 200
    assert 0.7 < derived["splits"]["train"] / 200 < 0.9
    again = _upload(client, _npz(ids=ids, x=x, y=y)).json()
    assert again["splits"] == derived["splits"] and again["sha256"] == derived["sha256"]
    ints = _upload(client, _npz(ids=ids, x=x, y=y, split=(np.arange(200) >= 150).astype(np.int8)))
    assert ints.json()["splits"] == {"train": 150, "test": 50}


def test_duplicate_ids_are_listed(client):
    ids = np.array(["a", "b", "a", "c", "c", "d"])
    body = assert_problem(
        _upload(client, _npz(ids=ids, x=np.zeros((6, 2)), y=np.array([0, 1] * 3))), 422, "duplicate-sample-ids"
    )
    assert body["duplicate_sample_ids"] == ["a", "c"] and body["duplicate_count"] == 2


def test_bad_uploads_are_422_and_store_nothing(client):
    before = client.get("/v1/datasets", params={"page_size": 500}).json()["items"]
    ids = np.array(["a", "b", "c", "d"])
    good = {"ids": ids, "x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "split": np.array(["train"] * 4)}
    cases = {
        "not an npz": b"this is not a zip file",
        "missing y": _npz(ids=ids, x=good["x"]),
        "extra array": _npz(**good, secret=np.zeros(3)),
        "object ids (pickle)": _npz(**{**good, "ids": np.array(["a", "b", "c", "d"], dtype=object)}),
        "rows mismatch": _npz(**{**good, "x": np.zeros((3, 2))}),
        "float labels": _npz(**{**good, "y": np.array([0.5, 1, 0, 1])}),
        "negative labels": _npz(**{**good, "y": np.array([-1, 1, 0, 1])}),
        "bad split": _npz(**{**good, "split": np.array(["train", "train", "dev", "test"])}),
        "nan x": _npz(**{**good, "x": np.full((4, 2), np.nan)}),
        "one class": _npz(**{**good, "y": np.zeros(4, dtype=int)}),
        "no training rows": _npz(**{**good, "split": np.array(["test"] * 4)}),
        "1-D x": _npz(**{**good, "x": np.zeros(4)}),
    }
    for case, data in cases.items():
        body = assert_problem(_upload(client, data), 422)
        assert body["type"] == "/problems/invalid-dataset", (case, body)
        assert body["detail"], case
    assert client.get("/v1/datasets", params={"page_size": 500}).json()["items"] == before


def test_form_errors(client):
    assert_problem(client.post("/v1/datasets", data={"builtin": "cifar"}), 422, "validation-error")
    assert_problem(client.post("/v1/datasets", data={}), 422, "validation-error")
    both = client.post("/v1/datasets", data={"builtin": "digits", "name": "x"}, files={"file": ("a.npz", b"x")})
    assert_problem(both, 422)
    for name in ("../etc/passwd", "a\\b", "tab\there", " leading"):
        body = assert_problem(_upload(client, b"", name=name), 422, "validation-error")
        assert body["errors"][0]["field"] == "body.name", (name, body)
    assert_problem(client.get(f"/v1/datasets/{uuid.uuid4()}"), 404, "not-found")
    assert_problem(client.get("/v1/datasets/not-a-uuid"), 422, "validation-error")


def test_listing_pages_through_everything(client):
    for _ in range(3):
        client.post("/v1/datasets", data={"builtin": "digits"})
    seen, token = [], None
    while True:
        page = client.get("/v1/datasets", params={"page_size": 2, **({"page_token": token} if token else {})}).json()
        seen += [d["id"] for d in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert len(seen) == len(set(seen)) >= 3 and seen == sorted(seen)
    assert_problem(client.get("/v1/datasets", params={"page_token": "garbage!"}), 422)
    assert digits()["x"].shape == (1797, 8, 8)
