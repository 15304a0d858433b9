"""The audit chain under concurrent writers. Events are committed to the inbox with their
transaction and chained after by the sequencer: concurrent requests must still leave one unbroken
chain, a transaction that loses a race (and rolls back) must leave no event behind, and committed
events must reach the chain with nobody reading it."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
from sqlalchemy import func, select, text

from app.audit import sequencer
from app.audit import service as audit
from app.audit.tables import AuditEvent, AuditInboxEvent
from app.db import commit, new_session
from app.settings import get_settings
from tests.helpers import audit_events, forget, train_ids

GENESIS = "0" * 64


def test_concurrent_requests_leave_one_unbroken_chain(api_url, client, model):
    ids = train_ids(n=24)
    shared = {"key": f"same-{uuid.uuid4().hex}", "request_id": f"same-{uuid.uuid4().hex}"}

    def post(i: int) -> httpx.Response:
        with httpx.Client(base_url=api_url, timeout=60, headers=client.headers) as c:
            if i < 6:  # six retries of one request, racing each other
                return forget(c, model["id"], {"sample_ids": [ids[0]]}, "finetune", {"epochs": 1}, **shared)
            return forget(c, model["id"], {"sample_ids": [ids[i]]}, "finetune", {"epochs": 1})

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, range(24)))
    assert [a.status_code for a in answers] == [202] * 24, [a.text for a in answers if a.status_code != 202]
    request_ids = {a.json()["id"] for a in answers}
    assert len(request_ids) == 19  # the six retries got one request between them

    # This tenant's part of the chain: the seqs of other tenants' events (other modules') are gaps.
    events = audit_events(client)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    assert events[0]["seq"] != 1 or events[0]["prev_hash"] == GENESIS
    links = [(a, b) for a, b in zip(events, events[1:], strict=False) if b["seq"] == a["seq"] + 1]
    assert len(links) >= len(events) // 2 and all(b["prev_hash"] == a["hash"] for a, b in links)
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert times == sorted(times)  # never earlier than the event before it along the chain
    received = [e for e in events if e["action"] == "forget_request.received" and e["forget_request_id"] in request_ids]
    assert sorted(e["forget_request_id"] for e in received) == sorted(request_ids)

    for rid in request_ids:  # leave the worker free for the next module
        client.post(f"/v1/forget-requests/{rid}/cancel")


def _count(model, actor: str) -> int:
    db = new_session()
    try:
        return db.scalar(select(func.count()).select_from(model).where(model.actor == actor))
    finally:
        db.close()


def test_committed_events_are_chained_with_nobody_reading(stack_env):
    """Six threads of this process commit 60 events and nothing reads the trail: the sequencer thread
    the commits woke (and the one of any process chaining at the same time) must empty the inbox of
    them on its own, each event chained once."""
    actor = f"test-{uuid.uuid4().hex}"

    def write(writer: int) -> None:
        for n in range(10):
            db = new_session()
            try:
                audit.record(
                    db, action="test.background", actor=actor, tenant_id="default", entity_type="test",
                    entity_id=f"{writer}-{n}", payload={"n": n},
                )  # fmt: skip
                commit(db)
            finally:
                db.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(6)))
    _wait_chained(actor)
    assert _count(AuditInboxEvent, actor) == 0
    assert _count(AuditEvent, actor) == 60


def _wait_chained(actor: str) -> None:
    deadline = time.monotonic() + 30
    while _count(AuditInboxEvent, actor) and time.monotonic() < deadline:
        time.sleep(0.1)


def _record(actor: str, n: int) -> None:
    db = new_session()
    try:
        audit.record(db, action="test.stream", actor=actor, tenant_id="default", entity_type="test", entity_id=str(n))
        commit(db)
    finally:
        db.close()


def test_a_steady_stream_of_commits_is_chained_in_rounds_not_one_by_one(stack_env):
    """Four threads commit an event every 5 ms or so for about a second: the sequencer thread gathers
    for 0.2 s and leaves what arrives while it chains to its next round, so the 400 events are
    chained in a handful of transactions (when it chained again at once, it chained back to back, a
    few events at a time)."""
    actor = f"test-{uuid.uuid4().hex}"

    def stream(writer: int) -> None:
        for n in range(100):
            _record(actor, writer * 100 + n)
            time.sleep(0.005)

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(stream, range(4)))
    rounds = (time.monotonic() - started) / sequencer.GATHER_S + 1  # at most one round per gather
    _wait_chained(actor)
    assert _count(AuditEvent, actor) == 400
    db = new_session()
    try:  # rows written by one transaction share its xmin
        q = text("SELECT count(DISTINCT xmin::text) FROM audit_events WHERE actor = :actor")
        transactions = db.scalar(q, {"actor": actor})
    finally:
        db.close()
    # rounds, plus those of the worker's sequencer (and the API's, when it chains), which may take some
    assert transactions <= 2 * rounds + 2


def _events_of(table, request_id: uuid.UUID) -> list[str]:
    db = new_session()
    try:
        return list(db.scalars(select(table.action).where(table.forget_request_id == request_id)))
    finally:
        db.close()


def test_the_apis_own_events_are_chained_promptly_with_no_job_and_nobody_reading(client):
    """Creating an API key runs no job and nothing reads the trail: the worker's periodic pass
    (UNLEARND_AUDIT_CHAIN_POLL_S, 1 s) chains the API's event within moments (it used to wait in the
    inbox, unprotected, until a worker's next commit)."""
    assert get_settings().audit_chain_poll_s == 1.0 and not get_settings().api_chains_audit  # the defaults
    sequencer.flush()
    sequencer.chain_in_background(False)  # this process's thread must not be the one that chains it
    time.sleep(3 * sequencer.GATHER_S)  # a round it had started ends
    try:
        created = client.post("/v1/api-keys", json={"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": ["audit:read"]})
        assert created.status_code == 201, created.text
        key_id = created.json()["id"]
        deadline = time.monotonic() + 2.0
        chained: list[int] = []
        while not chained and time.monotonic() < deadline:
            time.sleep(0.05)
            db = new_session()
            try:
                q = select(AuditEvent.seq).where(AuditEvent.action == "api_key.created", AuditEvent.entity_id == key_id)
                chained = list(db.scalars(q))
            finally:
                db.close()
    finally:
        sequencer.chain_in_background(True)
    assert len(chained) == 1, "the API's event was not chained within 2 s"


def test_the_apis_events_are_chained_with_nobody_reading(client, model):
    """What the API committed for a forget request reaches the chain (by the API's sequencer or the
    worker's, after its claim of the job), with nobody reading."""
    created = forget(client, model["id"], {"sample_ids": train_ids(label=4, n=1)}, "finetune", {"epochs": 1})
    assert created.status_code == 202
    request_id = uuid.UUID(created.json()["id"])
    deadline = time.monotonic() + 60
    while _events_of(AuditInboxEvent, request_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _events_of(AuditInboxEvent, request_id) == []
    assert "forget_request.received" in _events_of(AuditEvent, request_id)
