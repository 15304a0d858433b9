"""Signed chain heads on the real stack: the periodic pass and an admin sign them, and verify (API
and offline CLI, from an export) catches a rewritten or truncated tail that the chain alone accepts,
and rejects a head whose signature does not match. Tampering is done as a superuser with the
triggers off, and undone before each test ends (the session's later tests share this chain). Other
tenants' events may sit anywhere in the chain: the export holds them as redacted links."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.audit import sequencer
from app.audit.hashchain import event_hash
from app.audit.tables import AuditEvent, AuditInboxEvent
from app.db import new_session
from tests.helpers import assert_problem, bearer, new_api_key
from workers.housekeeping import sign_chain_head

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"valid: (\d+) events link \((\d+) recomputed, (\d+) other tenants' only as links\); (\d+) signed heads match"
)


def _connect(stack_env) -> psycopg.Connection:
    dsn = stack_env["UNLEARND_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(dsn, row_factory=dict_row)


def _events(client: httpx.Client, n: int) -> None:
    """n events the API records (a key created each), chained before this returns."""
    for _ in range(n):
        resp = client.post("/v1/api-keys", json={"name": f"h-{uuid.uuid4().hex[:6]}", "scopes": ["audit:read"]})
        assert resp.status_code == 201, resp.text
    _quiet()


def _quiet() -> None:
    """Nothing waits in the inbox and the chain stopped growing: tampering cannot race a chainer."""
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        sequencer.flush()
        db = new_session()
        try:
            now = (db.query(AuditEvent).count(), db.query(AuditInboxEvent).count())
        finally:
            db.close()
        if now == last and now[1] == 0:
            return
        last = now
        time.sleep(0.3)
    raise AssertionError("the audit chain did not go quiet")


def _verify(client: httpx.Client, **params) -> dict:
    resp = client.get("/v1/audit-events/verify", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _sign(client: httpx.Client) -> dict:
    resp = client.post("/v1/audit/heads")
    assert resp.status_code == 201, resp.text
    return resp.json()


def _export(client: httpx.Client, tmp_path: Path, name: str) -> Path:
    resp = client.get("/v1/audit-events/export", params={"format": "jsonl"})
    assert resp.status_code == 200, resp.text
    path = tmp_path / name
    path.write_text(resp.text, encoding="utf-8")
    return path


def _cli(export: Path, key: str, *heads: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "app.cli", "verify-audit-export", str(export), f"--public-key={key}"]
    args += [f"--head={h}" for h in heads]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _valid(result: subprocess.CompletedProcess) -> tuple[int, int]:
    """A passing CLI run's (events, of which other tenants' links): each event counted once, either
    recomputed or, for another tenant's redacted record, checked as a link."""
    assert result.returncode == 0, result.stdout + result.stderr
    summary = SUMMARY.match(result.stdout)
    assert summary, result.stdout
    total, recomputed, linked, _ = map(int, summary.groups())
    assert total == recomputed + linked and recomputed > 0, result.stdout
    return total, linked


@pytest.fixture(scope="module")
def public_key(client) -> str:
    return client.get("/v1/keys").json()["keys"][0]["public_key"]


class Tamper:
    """What a superuser can do with the triggers off; ``restore`` puts every row back as it was."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.saved: dict[str, list[dict]] = {"audit_events": [], "audit_chain_heads": []}

    def _off(self, sql: str, params: dict, table: str) -> list[dict]:
        with self.conn.transaction():
            self.conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            rows = self.conn.execute(sql + " RETURNING *", params).fetchall()
            self.conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        return rows

    def delete_events_from(self, seq: int) -> None:
        rows = self._off("DELETE FROM audit_events WHERE seq >= %(s)s", {"s": seq}, "audit_events")
        self.saved["audit_events"] += rows

    def delete_heads_from(self, seq: int) -> None:
        rows = self._off("DELETE FROM audit_chain_heads WHERE seq >= %(s)s", {"s": seq}, "audit_chain_heads")
        self.saved["audit_chain_heads"] += rows

    def rewrite_last_event(self) -> int:
        """Change the last event's payload and recompute its hash: the chain alone still verifies."""
        db = new_session()
        try:
            event = db.query(AuditEvent).order_by(AuditEvent.seq.desc()).first()
            db.expunge(event)
        finally:
            db.close()
        original = self.conn.execute("SELECT * FROM audit_events WHERE seq = %(s)s", {"s": event.seq}).fetchone()
        self.conn.commit()
        event.payload = {**event.payload, "scopes": ["admin"]}
        sql = "UPDATE audit_events SET payload = %(p)s, hash = %(h)s WHERE seq = %(s)s"
        params = {"p": Jsonb(event.payload), "h": event_hash(event.prev_hash, event), "s": event.seq}
        self._off(sql, params, "audit_events")
        self.saved["audit_events"].append(original)
        return event.seq

    def restore(self) -> None:
        with self.conn.transaction():
            for table, rows in self.saved.items():
                self.conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
                for row in rows:
                    self.conn.execute(f"DELETE FROM {table} WHERE {'seq' if table == 'audit_events' else 'id'} = %(k)s",
                                      {"k": row["seq" if table == "audit_events" else "id"]})  # fmt: skip
                    values = {k: Jsonb(v) if k == "payload" else v for k, v in row.items()}
                    cols = ", ".join(values)
                    self.conn.execute(
                        f"INSERT INTO {table} ({cols}) VALUES ({', '.join(f'%({c})s' for c in values)})", values
                    )
                self.conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


@pytest.fixture
def tamper(stack_env, client):
    _events(client, 2)
    with _connect(stack_env) as conn:
        t = Tamper(conn)
        try:
            yield t
        finally:
            t.restore()
    assert _verify(client)["ok"] is True


def test_the_periodic_pass_signs_the_head_once_per_move(client, public_key):
    _events(client, 1)
    end = _verify(client)["to_seq"]
    assert sign_chain_head() == end
    assert sign_chain_head() == end  # the chain did not move: the same head, not a new one
    listed = client.get("/v1/audit/heads", params={"page_size": 500}).json()["items"]
    assert [h["head"]["seq"] for h in listed].count(end) == 1
    head = next(h for h in listed if h["head"]["seq"] == end)
    assert head["head"]["type"] == "unlearnd.audit-chain-head" and head["signature"]["alg"] == "Ed25519"
    report = _verify(client)
    assert (report["ok"], report["latest_head_seq"]) == (True, end) and report["heads_checked"] >= 1


def test_heads_are_paginated_and_only_an_admin_signs_one(client, stack_env):
    _events(client, 1)
    _sign(client)
    _events(client, 1)
    _sign(client)
    first = client.get("/v1/audit/heads", params={"page_size": 1}).json()
    assert len(first["items"]) == 1 and first["next_page_token"]
    second = client.get("/v1/audit/heads", params={"page_size": 1, "page_token": first["next_page_token"]}).json()
    assert second["items"][0]["head"]["seq"] > first["items"][0]["head"]["seq"]
    reader = bearer(new_api_key("default", ["audit:read"], name="heads-reader"))
    assert_problem(client.post("/v1/audit/heads", headers=reader), 403, "insufficient-scope")
    assert client.get("/v1/audit/heads", headers=reader).status_code == 200


def test_a_rewritten_tail_is_caught_by_the_signed_head(client, tamper, public_key, tmp_path):
    head = _sign(client)
    seq = tamper.rewrite_last_event()
    assert seq == head["head"]["seq"]
    assert _verify(client, to_seq=seq - 1)["ok"] is True  # the chain up to it is intact
    report = _verify(client)
    assert (report["ok"], report["first_broken_seq"]) == (False, seq), report
    assert report["reason"].startswith("hash differs from the stored chain head signed at")

    offline = _cli(_export(client, tmp_path, "rewritten.jsonl"), public_key)
    assert offline.returncode == 1, offline.stdout
    assert offline.stdout.startswith(f"INVALID at seq {seq}: hash differs from the export chain head"), offline.stdout


def test_a_truncated_tail_is_caught_by_the_signed_head(client, tamper, public_key, tmp_path):
    head = _sign(client)
    end = head["head"]["seq"]
    tamper.delete_events_from(end - 1)  # the head's own event and the one before it
    report = _verify(client)
    assert (report["ok"], report["first_broken_seq"], report["to_seq"]) == (False, end - 1, end - 2), report
    assert "vouches for seq" in report["reason"] and "events were deleted" in report["reason"]

    offline = _cli(_export(client, tmp_path, "truncated.jsonl"), public_key)
    assert offline.returncode == 1 and "events were deleted" in offline.stdout, offline.stdout


def test_a_head_the_auditor_kept_catches_a_tail_deleted_with_its_stored_head(client, tamper, public_key, tmp_path):
    """Rows after the latest stored head cannot be defended by it: delete the tail and the heads
    that covered it and the service alone finds nothing wrong; the head the auditor kept does."""
    saved = _sign(client)
    end = saved["head"]["seq"]
    head_file = tmp_path / "head.json"
    head_file.write_text(json.dumps(saved), encoding="utf-8")
    tamper.delete_events_from(end)
    tamper.delete_heads_from(end)

    alone = _verify(client)
    assert alone["ok"] is True and alone["to_seq"] == end - 1  # what the service's own records allow
    report = _verify(client, head=json.dumps(saved))
    assert (report["ok"], report["first_broken_seq"]) == (False, end), report
    assert report["reason"].startswith(f"the chain ends at seq {end - 1}, but the supplied chain head")

    export = _export(client, tmp_path, "cut.jsonl")
    assert _valid(_cli(export, public_key))[0] == end - 1
    offline = _cli(export, public_key, head_file)
    assert offline.returncode == 1 and "events were deleted" in offline.stdout, offline.stdout


def test_a_head_with_a_bad_signature_is_rejected(client, public_key, tmp_path):
    new_api_key(f"heads-{uuid.uuid4().hex[:8]}", ["audit:read"])  # another tenant's event inside the export
    _events(client, 1)
    head = _sign(client)
    forged = {**head, "head": {**head["head"], "seq": head["head"]["seq"] - 1}}  # signed for another seq
    report = _verify(client, head=json.dumps(forged))
    assert (report["ok"], report["first_broken_seq"]) == (False, forged["head"]["seq"]), report
    assert report["reason"] == (
        f"supplied chain head for seq {forged['head']['seq']}: signature does not match the chain head "
        "(altered, or signed by another key)"
    )
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(json.dumps(forged), encoding="utf-8")
    export = _export(client, tmp_path, "intact.jsonl")
    total, linked = _valid(_cli(export, public_key))
    assert total >= head["head"]["seq"] and linked >= 1
    bad = _cli(export, public_key, forged_file)
    assert bad.returncode == 1 and "signature does not match the chain head" in bad.stdout, bad.stdout

    for malformed in ("not json", json.dumps({"head": {"seq": 1}})):
        problem = assert_problem(client.get("/v1/audit-events/verify", params={"head": malformed}), 422)
        assert problem["detail"].startswith("head is not")
