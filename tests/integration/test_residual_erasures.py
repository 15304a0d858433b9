"""Samples erased from one model are still held by the other models of the same dataset until they
are erased there too; the service says which models, how many samples, and which request erased them."""

from __future__ import annotations

import pytest

from app.core.hashing import sha256_of_json
from tests.helpers import forget, register_digits, train_ids, train_model, wait_request


@pytest.fixture(scope="module")
def dataset(client) -> dict:
    return register_digits(client)  # a dataset of this module's own: tombstones are dataset-wide


def _erase(client, model_id: str, ids: list[str]) -> dict:
    resp = forget(client, model_id, {"sample_ids": ids}, "finetune", {"epochs": 1}, on_verification_failure="accept")
    assert resp.status_code == 202, resp.text
    fr = wait_request(client, resp.json()["id"])
    assert fr["state"] == "SUCCEEDED", fr
    return fr


def _residual(client, model_id: str) -> dict:
    resp = client.get(f"/v1/models/{model_id}/residual-erasures")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_other_models_of_the_dataset_hold_erased_samples_until_erased_there(client, dataset):
    a = train_model(client, dataset["id"])
    b = train_model(client, dataset["id"])
    ids = train_ids(n=3)
    fr = _erase(client, a["id"], ids)

    assert _residual(client, a["id"])["samples_held"] == 0
    held = _residual(client, b["id"])
    assert held["samples_held"] == 3 and held["erased_by_requests"] == [fr["id"]]
    assert held["held_sha256"] == sha256_of_json(sorted(ids))
    events = client.get("/v1/audit-events", params={"model_id": b["id"], "action": "model.holds_erased_samples"})
    [event] = events.json()["items"]
    assert event["forget_request_id"] == fr["id"] and event["payload"]["samples_held"] == 3
    assert not set(ids) & set(str(event))  # counts and a hash, never the sample IDs

    # a model trained after the erasure never saw the samples (tombstones keep them out of training)
    c = train_model(client, dataset["id"])
    assert _residual(client, c["id"])["samples_held"] == 0

    _erase(client, b["id"], ids)  # erased from B too: nothing held anywhere
    assert _residual(client, b["id"])["samples_held"] == 0
