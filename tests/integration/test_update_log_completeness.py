"""A complete update log or none: after an erasure by a method that does not subtract, the purge
removes steps that also held other samples. amnesiac (and first-epoch gradient ascent) for one of
those samples must refuse (409 update-log-incomplete, with counts) instead of subtracting what is left
and reporting success; the head version does not move. Steps subtracted earlier are accounted for."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import select

from app.update_logs import purge
from app.update_logs.tables import PURGED, SUBTRACTED, UpdateLogSample, UpdateLogStep
from tests.helpers import (
    FAST_RECIPE,
    audit_events,
    forget,
    register_digits,
    train_ids,
    train_model,
    wait_for,
    wait_request,
)
from workers.runner.update_logs import DbUpdateLogReader

pytestmark = pytest.mark.integration

LOG_SPEC = {"mode": "dense", "first_epoch_gradients": ["fc2"], "chunk_steps": 32}
EPOCHS = FAST_RECIPE["epochs"]


def _logged_model(client) -> tuple[dict, uuid.UUID]:
    """Its own dataset: erasures are dataset-wide."""
    model = train_model(client, register_digits(client)["id"], update_log=LOG_SPEC)
    return model, uuid.UUID(model["update_log_id"])


def _finished(client, resp) -> dict:
    assert resp.status_code == 202, resp.text
    return wait_request(client, resp.json()["id"])


def _succeeded(client, resp) -> dict:
    fr = _finished(client, resp)
    assert fr["state"] == "SUCCEEDED", fr["jobs"][0]["error"]
    return fr["jobs"][0]


def _erase(client, model_id: str, ids: list[str], method: str, params: dict) -> dict:
    """An erasure that must make a version whatever the gate says of it: the log's bookkeeping is
    tested here (a few samples can never pass the membership test: only retrain could)."""
    resp = forget(client, model_id, {"sample_ids": ids}, method, params, on_verification_failure="accept")
    return _succeeded(client, resp)


def _wait_purge(client, job_id: str) -> None:
    """The worker purges the log right after the erasure commits; its audit event says it is done."""
    wait_for(client, f"/v1/audit-events?job_id={job_id}&action={purge.PURGED}", lambda body: body["items"])


def _states(db, log_id, epoch: int | None = None) -> dict[str, Counter]:
    """sample -> its steps per state (the index after the purge: erased samples have no rows)."""
    db.rollback()
    q = (
        select(UpdateLogSample.sample_id, UpdateLogStep.state)
        .join(
            UpdateLogStep,
            (UpdateLogStep.log_id == UpdateLogSample.log_id) & (UpdateLogStep.step == UpdateLogSample.step),
        )
        .where(UpdateLogSample.log_id == log_id)
        .order_by(UpdateLogSample.sample_id, UpdateLogSample.step)  # the same picks every run
    )
    if epoch is not None:
        q = q.where(UpdateLogStep.epoch == epoch)
    out: dict[str, Counter] = {}
    for sid, state in db.execute(q):
        out.setdefault(sid, Counter())[state] += 1
    return out


def _refused(client, resp, missing: str) -> dict:
    fr = _finished(client, resp)
    assert fr["state"] == "FAILED" and fr["jobs"][0]["state"] == "FAILED", fr
    assert fr["jobs"][0]["result_version"] is None
    error = fr["jobs"][0]["error"]
    assert error["type"] == "/problems/update-log-incomplete" and error["status"] == 409, error
    assert error["missing"] == missing
    return error


def test_amnesiac_and_first_epoch_ascent_refuse_steps_an_earlier_erasure_purged(client, db):
    model, log_id = _logged_model(client)
    mid = model["id"]
    erased = train_ids(n=2)
    job = _erase(client, mid, erased, "finetune", {"epochs": 1})
    _wait_purge(client, job["id"])
    head = client.get(f"/v1/models/{mid}").json()["head_version"]
    versions = client.get(f"/v1/models/{mid}/versions").json()["items"]
    log_before = client.get(f"/v1/models/{mid}/update-log").json()
    assert 0 < log_before["steps_purged"] <= 2 * EPOCHS and log_before["steps_subtracted"] == 0

    # T: its first-epoch step was purged with an erased sample's; U: none of its steps was
    first = _states(db, log_id, epoch=0)
    states = _states(db, log_id)
    assert not set(erased) & set(states)  # the erased samples' own rows are gone
    t = next(sid for sid, c in first.items() if c[PURGED])
    u = next(sid for sid, c in states.items() if not c[PURGED] and sid not in erased)
    assert sum(states[t].values()) == EPOCHS  # its rows stay, one per epoch, some marked purged

    error = _refused(client, forget(client, mid, {"sample_ids": [t, u]}, "amnesiac", {"repair_epochs": 0}), "steps")
    assert error["samples_checked"] == 2 and error["samples_missing"] == error["samples_purged"] == 1
    assert error["steps_purged"] == error["steps_missing"] == states[t][PURGED]
    assert error["steps_never_recorded"] == error["samples_never_recorded"] == 0
    assert "1 of 2 forget samples" in error["detail"] and t not in error["detail"]

    error = _refused(
        client,
        forget(client, mid, {"sample_ids": [t]}, "gradient_ascent", {"gradients": "first_epoch"}),
        "first_epoch_gradients",
    )
    assert error["samples_checked"] == error["samples_missing"] == error["samples_purged"] == 1
    assert error["steps_purged"] == 1 and error["steps_subtracted"] == 0  # its one first-epoch step

    # the worker's reader, directly: the erased samples count as erased before, not missing
    c = DbUpdateLogReader(log_id).coverage([*erased, t, u])
    assert (c.samples, c.samples_erased, c.samples_missing, c.samples_purged) == (4, 2, 1, 1)
    assert c.steps_purged == states[t][PURGED] and c.steps_unrecorded == 0

    # nothing moved: no version, the same head, the log as it was (nothing subtracted)
    assert client.get(f"/v1/models/{mid}").json()["head_version"] == head
    assert client.get(f"/v1/models/{mid}/versions").json()["items"] == versions
    assert client.get(f"/v1/models/{mid}/update-log").json() == log_before


def test_steps_subtracted_earlier_are_accounted_for_and_never_subtracted_twice(client, db):
    model, log_id = _logged_model(client)
    mid = model["id"]
    job = _erase(client, mid, train_ids(n=1), "amnesiac", {"repair_epochs": 0})
    assert job["metrics"]["update_log_steps_removed"] == EPOCHS
    _wait_purge(client, job["id"])

    # V shared a step with it: that step was subtracted (its whole batch's influence is gone), not missing
    states = _states(db, log_id)
    v = next(sid for sid, c in states.items() if c[SUBTRACTED])
    job = _erase(client, mid, [v], "amnesiac", {"repair_epochs": 0})
    m = job["metrics"]
    assert m["update_log_steps_subtracted_before"] == states[v][SUBTRACTED]
    assert m["update_log_steps_removed"] == EPOCHS - states[v][SUBTRACTED]
    _wait_purge(client, job["id"])

    # 300 samples: every batch held one of them, so W's steps were all subtracted: complete, none left
    many = [sid for sid in train_ids() if sid not in (*train_ids(n=1), v)][100:400]
    job = _erase(client, mid, many, "amnesiac", {"repair_epochs": 0})
    _wait_purge(client, job["id"])
    states = _states(db, log_id)
    w = next(sid for sid, c in states.items() if c[SUBTRACTED] == EPOCHS)
    job = _erase(client, mid, [w], "amnesiac", {"repair_epochs": 0})
    assert job["metrics"]["update_log_steps_removed"] == 0
    assert job["metrics"]["update_log_steps_subtracted_before"] == EPOCHS


def test_the_same_sample_again_can_only_be_retrained_away(client):
    """Its data left the stored dataset with the first erasure: amnesiac (which the gate could not
    verify without that data) refuses; auto serves it with retrain alone."""
    model, _log_id = _logged_model(client)
    a = train_ids(n=1)
    job = _erase(client, model["id"], a, "amnesiac", {"repair_epochs": 0})
    _wait_purge(client, job["id"])
    fr = _finished(client, forget(client, model["id"], {"sample_ids": a}, "amnesiac", {"repair_epochs": 0}))
    assert fr["state"] == "FAILED" and fr["jobs"][0]["error"]["type"] == "/problems/method-not-applicable"
    assert "already erased from the stored dataset" in fr["jobs"][0]["error"]["detail"]
    auto = _succeeded(
        client,
        client.post(
            "/v1/forget-requests",
            json={"request_id": uuid.uuid4().hex, "model_id": model["id"], "scope": {"sample_ids": a}},
        ),
    )
    assert [a["method"] for a in auto["metrics"]["attempts"]] == ["retrain"]
    assert "already left the stored dataset" in auto["metrics"]["plan_notes"][0]


def test_auto_escalates_past_an_incomplete_log(client, db):
    """After a purge, auto's log-based attempts for a class refuse (first-epoch gradients, amnesiac):
    recorded as refused, escalated, and the plan ends with a model that passes."""
    model, log_id = _logged_model(client)
    mid = model["id"]
    job = _erase(client, mid, train_ids(n=2), "finetune", {"epochs": 1})
    _wait_purge(client, job["id"])
    fr = _finished(
        client,
        client.post(
            "/v1/forget-requests",
            json={"request_id": uuid.uuid4().hex, "model_id": mid, "scope": {"class_labels": [4]}},
        ),
    )
    assert fr["state"] == "SUCCEEDED", fr
    attempts = fr["jobs"][0]["metrics"]["attempts"]
    refused = [a for a in attempts if a["outcome"] == "refused"]
    assert [a["method"] for a in refused] == ["gradient_ascent", "amnesiac"], attempts
    assert all("missing" in a["reason"] or "purged" in a["reason"] for a in refused)
    assert attempts[-1]["outcome"] in ("verified", "exact")
    escalated = [e for e in audit_events(client, forget_request_id=fr["id"]) if e["action"] == "job.escalated"]
    assert [e["payload"]["from"] for e in escalated] == [a["method"] for a in attempts[:-1]]
