"""The polling path: read-only sessions on the real Postgres, and the Server-Timing header the
service benchmark reads."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.db.session import get_engine, new_read_session, new_session
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
