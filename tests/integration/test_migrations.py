"""The schema is built only by the migrations, and they match the tables the code maps."""

from __future__ import annotations

import uuid

import psycopg
from alembic import command
from sqlalchemy import create_engine, inspect

from app.db.migrate import alembic_config, upgrade_to_head
from tests.conftest import ADMIN_DSN
from tests.services import PG_HOST, PG_PORT

TABLES = {
    "alembic_version",
    "api_keys",
    "audit_events",
    "audit_inbox",
    "audit_chain_heads",
    "datasets",
    "dataset_samples",
    "models",
    "model_versions",
    "forget_requests",
    "idempotency_keys",
    "jobs",
    "job_requests",
    "job_batches",
    "update_logs",
    "update_log_chunks",
    "update_log_steps",
    "update_log_samples",
}


def test_models_match_migrations_on_the_test_database(stack_env):
    command.check(alembic_config(stack_env["UNLEARND_DATABASE_URL"]))  # raises on any drift


def test_downgrade_and_upgrade_again_on_postgres(stack_env):
    name = f"unlearnd_mig_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        cfg = alembic_config(url)
        upgrade_to_head(url)
        engine = create_engine(url)
        assert set(inspect(engine).get_table_names()) == TABLES
        command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade_to_head(url)
        assert set(inspect(engine).get_table_names()) == TABLES
        engine.dispose()
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_same_migrations_build_the_embedded_sqlite_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade_to_head(url)
    command.check(alembic_config(url))
    assert set(inspect(create_engine(url)).get_table_names()) == TABLES
