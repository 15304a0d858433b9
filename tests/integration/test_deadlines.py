"""Deadlines: due_at = received + UNLEARND_REQUEST_DUE_DAYS (30), and the overdue / due_before filters."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import update

from app.forget_requests.tables import ForgetRequest
from tests.helpers import forget, train_ids, wait_request


def _ids(client, **params) -> set[str]:
    body = client.get("/v1/forget-requests", params={"page_size": 500, **params}).json()
    return {fr["id"] for fr in body["items"]}


def test_due_dates_and_overdue_filter(client, db, model):
    made = [
        forget(
            client,
            model["id"],
            {"sample_ids": train_ids(label=7, n=1)},
            method="finetune",
            on_verification_failure="accept",
        )
        for _ in range(3)
    ]
    done = [wait_request(client, r.json()["id"]) for r in made]
    assert all(fr["state"] == "SUCCEEDED" for fr in done), done
    for fr in done:
        received, due = datetime.fromisoformat(fr["received_at"]), datetime.fromisoformat(fr["due_at"])
        assert due - received == timedelta(days=30)
    ids = [fr["id"] for fr in done]

    soon = (datetime.fromisoformat(done[0]["received_at"]) + timedelta(days=29)).isoformat()
    later = (datetime.fromisoformat(done[-1]["received_at"]) + timedelta(days=31)).isoformat()
    assert not set(ids) & _ids(client, due_before=soon, model_id=model["id"])
    assert set(ids) <= _ids(client, due_before=later, model_id=model["id"])

    # Arrange two past deadlines: one request erased (discharged), one whose job failed (still owed).
    past = datetime.fromisoformat(done[0]["received_at"]) - timedelta(days=1)
    db.execute(update(ForgetRequest).where(ForgetRequest.id == uuid.UUID(ids[0])).values(due_at=past))
    db.execute(update(ForgetRequest).where(ForgetRequest.id == uuid.UUID(ids[1])).values(due_at=past, state="FAILED"))
    db.commit()
    overdue = _ids(client, overdue="true", model_id=model["id"])
    assert ids[1] in overdue and ids[0] not in overdue and ids[2] not in overdue
    assert ids[1] in _ids(client, overdue="true", state="FAILED", model_id=model["id"])
    bad = client.get("/v1/forget-requests", params={"overdue": "perhaps"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
