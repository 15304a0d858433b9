"""The polling path: read-only sessions on the real Postgres, and the Server-Timing header the
service benchmark reads."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, func, select

from app.datasets import repository as datasets_repo
from app.datasets.tables import Dataset
from app.db.session import get_engine, new_read_session, new_session
from app.forget_requests.tables import ForgetRequest
from app.jobs import repository as jobs_repo
from app.jobs.tables import Job, JobRequest
from app.models import repository as models_repo
from app.models.tables import Model
from tests.helpers import forget, train_ids


def test_one_engine_and_pool_per_database_however_it_is_asked_for(stack_env):
    """get_engine() and get_engine(None) were two cache entries: two pools of up to 40 connections
    each in one process."""
    engine = get_engine()
    assert get_engine(None) is engine and get_engine(stack_env["UNLEARND_DATABASE_URL"]) is engine
    session, read = new_session(), new_read_session()
    try:
        assert session.get_bind() is engine
        assert read.get_bind().pool is engine.pool  # the read sessions' autocommit view of it
    finally:
        session.close()
        read.close()


def test_read_session_refuses_writes_and_opens_no_transaction(stack_env, model):
    session = new_read_session()
    try:
        before = session.scalar(select(func.count()).select_from(Model))
        # Autocommit: every statement is its own transaction (inside one, now() would not move).
        conn = session.connection()
        first = conn.exec_driver_sql("SELECT now()").scalar()
        conn.exec_driver_sql("SELECT pg_sleep(0.01)")
        assert conn.exec_driver_sql("SELECT now()").scalar() > first
        row = session.get(Model, model["id"])
        row.name = "renamed-by-a-read-session"
        with pytest.raises(RuntimeError, match="read-only session"):
            session.flush()
    finally:
        session.close()
    check = new_read_session()
    try:
        assert check.scalar(select(func.count()).select_from(Model)) == before
        assert check.get(Model, model["id"]).name == model["name"]
    finally:
        check.close()


def test_poll_answers_with_server_timing(client, model):
    created = forget(client, model["id"], {"sample_ids": train_ids(label=1, n=2)}, method="finetune")
    assert created.status_code == 202
    polled = client.get(created.headers["location"])
    assert polled.status_code == 200 and polled.json()["id"] == created.json()["id"]
    for resp in (created, polled):
        name, _, duration = resp.headers["server-timing"].partition(";dur=")
        assert name == "app" and 0 < float(duration) < 60_000
    assert polled.headers["content-type"] == "application/json"


def _columns_equal(snapshot, orm_object) -> None:
    table = type(orm_object).__table__
    assert snapshot is not None
    assert {c.key: getattr(snapshot, c.key) for c in table.c} == {c.key: getattr(orm_object, c.key) for c in table.c}


def _statements(session) -> list[str]:
    seen: list[str] = []
    event.listen(session.connection(), "before_cursor_execute", lambda conn, cur, sql, *a: seen.append(sql))
    return seen


def test_hot_path_reads_return_what_the_orm_loads_in_one_statement_each(client, model, db):
    """The submit and poll paths read Core rows as snapshots (app.db.rows): every column of the
    mapped class, the same values, and one statement per read however many sample IDs."""
    created = forget(client, model["id"], {"sample_ids": train_ids(label=2, n=2)}, method="finetune")
    assert created.status_code == 202
    fr_id, model_id = uuid.UUID(created.json()["id"]), uuid.UUID(model["id"])
    # one snapshot of the database for both reads: the worker moves the job on meanwhile
    db.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    seen = _statements(db)

    fr, jobs = jobs_repo.request_with_jobs(db, fr_id)
    snapshot_model, snapshot_dataset = models_repo.get_with_dataset(db, model_id)
    ids = train_ids(label=2, n=3) + ["no-such-sample"]
    splits = datasets_repo.splits_of(db, snapshot_dataset.id, ids)
    assert len(seen) == 3

    _columns_equal(fr, db.get(ForgetRequest, fr_id))
    job_id = uuid.UUID(created.json()["jobs"][0]["id"])
    # the job may also serve another test's queued request for this model (coalescing)
    linked = db.scalar(select(func.count()).select_from(JobRequest).where(JobRequest.job_id == job_id))
    assert [(job.id, served) for job, served in jobs] == [(job_id, linked)] and linked >= 1
    _columns_equal(jobs[0][0], db.get(Job, jobs[0][0].id))
    _columns_equal(snapshot_model, db.get(Model, model_id))
    _columns_equal(snapshot_dataset, db.get(Dataset, snapshot_dataset.id))
    assert splits == {sample_id: "train" for sample_id in ids[:3]}
    assert jobs_repo.request_with_jobs(db, uuid.uuid4()) is None
    assert models_repo.get_with_dataset(db, uuid.uuid4()) is None
