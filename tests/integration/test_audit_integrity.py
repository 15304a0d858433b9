"""The audit trail's integrity guarantees, on the test session's real Postgres: the table refuses
UPDATE/DELETE/TRUNCATE, a row altered behind the triggers is found by /verify, concurrent writers
leave a chain /verify accepts, and an export carries enough to re-check every hash offline with
nothing but the README's description of the canonical form (no app code), while another tenant's
events show in it only as redacted links."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from sqlalchemy import create_engine, text

from app.audit import sequencer
from app.audit import service as audit
from app.audit.export import stream_export
from app.audit.offline import BAD_HASH, MISSING, NOT_ONLY_A_LINK, verify_export_lines
from app.audit.verification import verify_chain
from app.db import commit, new_session
from app.db.migrate import upgrade_to_head
from tests.helpers import assert_problem, bearer, forget, new_api_key, train_ids, wait_request

pytestmark = pytest.mark.integration

GENESIS = "0" * 64  # README: the first event's prev_hash
WRITERS = 8
EVENTS_PER_WRITER = 10
REFUSED = {
    "update": "UPDATE audit_events SET actor = 'mallory' WHERE seq = %(seq)s",
    "delete": "DELETE FROM audit_events WHERE seq = %(seq)s",
    "truncate": "TRUNCATE audit_events",
}


def _connect(stack_env) -> psycopg.Connection:
    """A raw connection as the superuser, beside the app: what a script or an intruder would use."""
    dsn = stack_env["UNLEARND_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    conn = psycopg.connect(dsn)
    conn.execute("SET lock_timeout = '10s'")  # TRUNCATE waits for every reader: fail, never hang
    conn.commit()
    return conn


def _one(conn: psycopg.Connection, sql: str, params: dict | None = None):
    value = conn.execute(sql, params or {}).fetchone()[0]
    conn.commit()  # end the read: an open transaction would hold a lock TRUNCATE waits on
    return value


def _received_seq(conn: psycopg.Connection, request_id: str) -> int:
    sql = "SELECT seq FROM audit_events WHERE action = 'forget_request.received' AND forget_request_id = %(r)s"
    return _one(conn, sql, {"r": request_id})


def _set_payload_behind_triggers(conn: psycopg.Connection, seq: int, payload: dict) -> None:
    """What a superuser can still do: switch the triggers off, rewrite a row, switch them on again."""
    with conn.transaction():
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        conn.execute("UPDATE audit_events SET payload = %(p)s WHERE seq = %(s)s", {"p": Jsonb(payload), "s": seq})
        conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")


def _verify(client: httpx.Client, **params) -> dict:
    resp = client.get("/v1/audit-events/verify", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def finished_requests(client, model) -> list[str]:
    """Two forget requests run to the end, so the chain holds whole request lifecycles."""
    answers = [
        forget(client, model["id"], {"sample_ids": [sid]}, "finetune", {"epochs": 1}, on_verification_failure="accept")
        for sid in train_ids(n=2)
    ]
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    ids = [a.json()["id"] for a in answers]
    assert [wait_request(client, rid)["state"] for rid in ids] == ["SUCCEEDED", "SUCCEEDED"]
    sequencer.flush()  # the tests below read audit_events directly: chain what waits in the inbox
    return ids


@pytest.mark.parametrize("statement", REFUSED.values(), ids=REFUSED.keys())
def test_the_table_refuses_update_delete_and_truncate(stack_env, finished_requests, statement):
    with _connect(stack_env) as conn:
        seq = _received_seq(conn, finished_requests[0])
        end = _one(conn, "SELECT max(seq) FROM audit_events")
        row_hash = _one(conn, "SELECT hash FROM audit_events WHERE seq = %(s)s", {"s": seq})

        with pytest.raises(psycopg.Error, match="audit_events is append-only"):
            conn.execute(statement, {"seq": seq})
        conn.rollback()

        # writers may append meanwhile; nothing up to the old end may have gone or changed
        assert _one(conn, "SELECT count(*) FROM audit_events WHERE seq <= %(e)s", {"e": end}) == end
        assert _one(conn, "SELECT hash FROM audit_events WHERE seq = %(s)s", {"s": seq}) == row_hash


def test_the_embedded_sqlite_schema_refuses_update_and_delete(tmp_path):
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade_to_head(url)
    engine = create_engine(url)
    insert = (
        "INSERT INTO audit_events (seq, occurred_at, actor, action, entity_type, entity_id, payload, prev_hash, hash)"
        " VALUES (1, '2026-01-01 00:00:00', 'a', 'b', 'c', 'd', '{}', :g, 'h')"
    )
    with engine.begin() as conn:
        conn.execute(text(insert), {"g": GENESIS})
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="audit_events is append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_events")).scalars().all() == ["a"]
    engine.dispose()


def test_a_row_altered_behind_the_triggers_is_found(client, stack_env, finished_requests):
    with _connect(stack_env) as conn:
        seq = _received_seq(conn, finished_requests[1])
        original = _one(conn, "SELECT payload FROM audit_events WHERE seq = %(s)s", {"s": seq})
        _set_payload_behind_triggers(conn, seq, {**original, "sample_count": 0})
        try:
            broken = _verify(client)
            assert (broken["ok"], broken["first_broken_seq"]) == (False, seq), broken
            assert broken["reason"] == "hash does not match the event's content"
            assert (broken["checked"], broken["to_seq"]) == (seq - 1, seq - 1)  # intact up to the break
            assert _verify(client, from_seq=seq, to_seq=seq)["first_broken_seq"] == seq

            before = _verify(client, to_seq=seq - 1)
            assert (before["ok"], before["checked"], before["to_seq"]) == (True, seq - 1, seq - 1), before
            hash_before = _one(conn, "SELECT hash FROM audit_events WHERE seq = %(s)s", {"s": seq - 1})
            assert before["last_hash"] == hash_before
        finally:  # every later test of the session shares this chain: put the row back
            _set_payload_behind_triggers(conn, seq, original)
    restored = _verify(client)
    assert (restored["ok"], restored["first_broken_seq"], restored["reason"]) == (True, None, None), restored
    assert restored["to_seq"] >= seq


def _write_events(tag: str, writer: int) -> None:
    """Each event in its own app transaction: every commit races the other writers for the chain."""
    for n in range(EVENTS_PER_WRITER):
        session = new_session()
        try:
            audit.record(
                session,
                action="test.concurrent_write",
                actor=f"test-{tag}",
                tenant_id="default",
                entity_type="test",
                entity_id=f"{writer}-{n}",
                payload={"writer": writer, "n": n},
            )
            commit(session)
        finally:
            session.close()


def test_concurrent_writers_leave_one_chain_that_verifies(api_url, client, model, stack_env):
    tag, ids = uuid.uuid4().hex, train_ids(n=WRITERS)

    def writer(i: int) -> httpx.Response:
        # the API process and this one record events at once: two processes, one chain
        with httpx.Client(base_url=api_url, timeout=60, headers=client.headers) as c:
            answer = forget(
                c, model["id"], {"sample_ids": [ids[i]]}, "finetune", {"epochs": 1}, on_verification_failure="accept"
            )
        _write_events(tag, i)
        return answer

    with ThreadPoolExecutor(WRITERS) as pool:
        answers = list(pool.map(writer, range(WRITERS)))
    assert [a.status_code for a in answers] == [202] * WRITERS, [a.text for a in answers]

    sequencer.flush()  # whatever the sequencers of both processes have not chained yet
    with _connect(stack_env) as conn:
        end = _one(conn, "SELECT max(seq) FROM audit_events")
        assert _one(conn, "SELECT count(*) FROM audit_events WHERE seq <= %(e)s", {"e": end}) == end
        mine = _one(conn, "SELECT count(DISTINCT seq) FROM audit_events WHERE actor = %(a)s", {"a": f"test-{tag}"})
        assert mine == WRITERS * EVENTS_PER_WRITER
        head = _one(conn, "SELECT hash FROM audit_events WHERE seq = %(e)s", {"e": end})
    report = _verify(client, to_seq=end)
    assert report == {
        "ok": True,
        "checked": end,
        "from_seq": 1,
        "to_seq": end,
        "first_broken_seq": None,
        "reason": None,
        "last_hash": head,
        "heads_checked": report["heads_checked"],  # whatever heads earlier modules signed
        "latest_head_seq": report["latest_head_seq"],
    }

    for a in answers:  # leave the worker free for the next tests
        client.post(f"/v1/forget-requests/{a.json()['id']}/cancel")
    for a in answers:
        wait_request(client, a.json()["id"])


LINK_KEYS = {"seq", "prev_hash", "hash", "redacted"}  # README: all a redacted record holds


def _parse_export(fmt: str, body: str) -> list[dict]:
    """The events of an export, each as the object its hash covers plus prev_hash and hash, or
    another tenant's as a redacted link (seq, prev_hash, hash, redacted)."""
    if fmt == "jsonl":
        lines = [json.loads(line) for line in body.splitlines()]
        return [r for r in lines if "chain_head" not in r]  # signed heads follow the events
    records = []
    for row in csv.DictReader(io.StringIO(body)):
        if row["redacted"] == "true":  # README: only seq, prev_hash and hash filled
            assert {k for k, v in row.items() if v} == LINK_KEYS, row
            records.append(
                {"seq": int(row["seq"]), "prev_hash": row["prev_hash"], "hash": row["hash"], "redacted": True}
            )
            continue
        assert row["redacted"] == "", row
        # README: entity = {type, id}; an empty id cell is null; an empty tenant_id is no key at all
        record = {
            "seq": int(row["seq"]),
            "occurred_at": row["occurred_at"],
            "actor": row["actor"],
            "action": row["action"],
            "entity": {"type": row["entity_type"], "id": row["entity_id"]},
            **{k: row[k] or None for k in ("model_id", "forget_request_id", "job_id")},
            "payload": json.loads(row["payload"]),
            "prev_hash": row["prev_hash"],
            "hash": row["hash"],
        }
        if row["tenant_id"]:
            record["tenant_id"] = row["tenant_id"]
        records.append(record)
    return records


def _readme_hash(record: dict) -> str:
    """Written from README "Audit trail" alone: sha256 (hex) of the UTF-8 bytes of prev_hash followed
    by the JSON of the event object (the JSON Lines line without prev_hash and hash), keys sorted at
    every level, no whitespace, non-ASCII characters as themselves."""
    body = {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((record["prev_hash"] + text).encode("utf-8")).hexdigest()


def _export(client: httpx.Client, fmt: str, **params) -> list[dict]:
    resp = client.get("/v1/audit-events/export", params={"format": fmt, **params})
    assert resp.status_code == 200, resp.text
    media = {"jsonl": "application/x-ndjson", "csv": "text/csv"}[fmt]
    assert resp.headers["content-type"].startswith(media)
    assert resp.headers["content-disposition"] == f'attachment; filename="audit-events.{fmt}"'
    return _parse_export(fmt, resp.text)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_holds_every_matching_event_and_its_hashes_recompute(client, stack_env, model, finished_requests, fmt):
    with _connect(stack_env) as conn:
        end = _one(conn, "SELECT max(seq) FROM audit_events")
        sql = "SELECT array_agg(seq ORDER BY seq) FROM audit_events WHERE model_id = %(m)s AND seq <= %(e)s"
        expected = _one(conn, sql, {"m": model["id"], "e": end})
    records = _export(client, fmt, model_id=model["id"], to_seq=end)
    assert [r["seq"] for r in records] == expected and len(expected) > 2
    assert {r["model_id"] for r in records} == {model["id"]}
    assert [_readme_hash(r) for r in records] == [r["hash"] for r in records]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_unfiltered_export_rechains_offline_from_the_readme_alone(client, finished_requests, fmt):
    """The default tenant's unfiltered export is the whole chain, whichever tenants wrote it: every
    one of its own events recomputes, every other tenant's is a redacted link, and all of them link."""
    end = _verify(client)["to_seq"]
    records = _export(client, fmt, to_seq=end)
    assert [r["seq"] for r in records] == list(range(1, end + 1)) and end > 20
    prev, recomputed = GENESIS, 0
    for r in records:
        assert r["prev_hash"] == prev, r["seq"]
        if r.get("redacted") is True:
            assert set(r) == LINK_KEYS, r  # nothing of the other tenant's event
        else:
            assert _readme_hash(r) == r["hash"], r["seq"]
            recomputed += 1
        prev = r["hash"]
    assert recomputed > 20  # the fixture's request lifecycles, at least
    tail = _export(client, fmt, from_seq=end - 1, to_seq=end)
    assert [r["hash"] for r in tail] == [r["hash"] for r in records[-2:]]


def _record_events(tenant: str, tag: str, n: int) -> None:
    session = new_session()
    try:
        for i in range(n):
            audit.record(
                session,
                action=f"test.{tag}",
                actor=f"actor-{tag}",
                tenant_id=tenant,
                entity_type="test",
                entity_id=f"entity-{tag}-{i}",
                payload={"secret": f"payload-{tag}"},
            )
        commit(session)
    finally:
        session.close()


def test_another_tenants_events_are_exported_only_as_redacted_links(api_url, client, stack_env, finished_requests):
    """A second tenant's events between two of the default tenant's: the default tenant's export
    shows them only as links that leak nothing of them, the offline verifier passes on it, and it
    still catches a rewritten event of the tenant's own and a deleted redacted line."""
    tag, my_tag = uuid.uuid4().hex, uuid.uuid4().hex  # tag: in every field of the other tenant's events
    tenant = f"redact-{tag[:8]}"
    other_key = new_api_key(tenant, ["audit:read"], name=f"key-{tag}")  # the other tenant's first event
    _record_events(tenant, tag, 2)
    _record_events("default", my_tag, 1)  # one of the default tenant's after them
    sequencer.flush()
    with _connect(stack_env) as conn:
        sql = "SELECT array_agg(seq ORDER BY seq) FROM audit_events WHERE tenant_id = %(t)s"
        theirs = _one(conn, sql, {"t": tenant})
        mine = _one(conn, "SELECT seq FROM audit_events WHERE actor = %(a)s", {"a": f"actor-{my_tag}"})
        their_hashes = [_one(conn, "SELECT hash FROM audit_events WHERE seq = %(s)s", {"s": s}) for s in theirs]
    assert len(theirs) == 3 and theirs[-1] < mine

    resp = client.get("/v1/audit-events/export", params={"format": "jsonl", "to_seq": mine})
    body, csv_body = resp.text, client.get("/v1/audit-events/export", params={"format": "csv", "to_seq": mine}).text
    for text_ in (body, csv_body):  # neither its tenant, key name, actor, entity nor payload
        assert tenant not in text_ and tag not in text_ and my_tag in text_
    records = {r["seq"]: r for r in _parse_export("jsonl", body)}
    assert sorted(records) == list(range(1, mine + 1))
    assert [records[s] for s in theirs] == [
        {"seq": s, "prev_hash": records[s - 1]["hash"], "hash": h, "redacted": True}
        for s, h in zip(theirs, their_hashes, strict=True)
    ]
    assert "redacted" not in records[mine] and _readme_hash(records[mine]) == records[mine]["hash"]
    assert [r for r in _parse_export("csv", csv_body) if r["seq"] in theirs] == [records[s] for s in theirs]
    with httpx.Client(base_url=api_url, timeout=60, headers=bearer(other_key)) as other:
        resp = other.get("/v1/audit-events/export", params={"format": "jsonl", "to_seq": mine})
    own = [r["seq"] for r in _parse_export("jsonl", resp.text) if not r.get("redacted")]
    assert own == theirs and my_tag not in resp.text  # the other way round as well

    public_key = client.get("/v1/keys").json()["keys"][0]["public_key"]
    report = verify_export_lines(body.splitlines(), public_key)
    assert (report.ok, report.checked, report.last_seq) == (True, mine, mine), report
    assert report.linked >= len(theirs) and f"({mine - report.linked} recomputed, " in report.reason, report

    lines = body.splitlines()
    where = {json.loads(line)["seq"]: i for i, line in enumerate(lines) if '"chain_head"' not in line}
    rewritten = {**records[mine], "payload": {**records[mine]["payload"], "secret": "forged"}}
    forged = lines[: where[mine]] + [json.dumps(rewritten)] + lines[where[mine] + 1 :]
    report = verify_export_lines(forged, public_key)
    assert (report.ok, report.first_broken_seq, report.reason) == (False, mine, BAD_HASH), report
    cut = theirs[1]
    report = verify_export_lines(lines[: where[cut]] + lines[where[cut] + 1 :], public_key)
    assert (report.ok, report.first_broken_seq, report.reason) == (False, cut, MISSING.format(cut)), report
    padded = {**records[cut], "action": "api_key.created"}  # a redacted line may not carry content
    report = verify_export_lines(lines[: where[cut]] + [json.dumps(padded)] + lines[where[cut] + 1 :], public_key)
    assert (report.ok, report.first_broken_seq, report.reason) == (False, cut, NOT_ONLY_A_LINK), report


def test_small_batches_walk_the_same_chain_as_one_batch(client, stack_env, finished_requests):
    """Keyset batching must neither skip nor repeat an event at a batch boundary (another tenant's
    events included: the export holds every seq of the range, theirs as redacted links)."""
    end = _verify(client)["to_seq"]
    session = new_session()
    try:
        reports = [verify_chain(session, to_seq=end, batch_size=size).model_dump() for size in (1, 7, end)]
    finally:
        session.close()
    assert reports == [_verify(client, to_seq=end)] * 3 and reports[0]["checked"] == end
    exports = [
        "".join(stream_export("jsonl", tenant_id="default", from_seq=2, to_seq=end, batch_size=size))
        for size in (1, 7, end)
    ]
    events = [json.loads(line) for line in exports[0].splitlines() if '"chain_head"' not in line]
    assert len(set(exports)) == 1 and [e["seq"] for e in events] == list(range(2, end + 1))


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/audit-events/export", {"format": "xml"}),
        ("/v1/audit-events/export", {"from_seq": 0}),
        ("/v1/audit-events/export", {"from_seq": 5, "to_seq": 4}),
        ("/v1/audit-events/verify", {"to_seq": "last"}),
        ("/v1/audit-events/verify", {"from_seq": 5, "to_seq": 4}),
    ],
)
def test_bad_parameters_get_a_problem(client, path, params):
    body = assert_problem(client.get(path, params=params), 422, "validation-error")
    assert body["detail"]
