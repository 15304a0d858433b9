"""Test fixtures: the real Postgres and Redis, a database built by the Alembic migrations, a real
Celery worker process and the API over HTTP.

Each test session gets its own database and its own queue name, so nothing it does touches other
data on the machine's servers. Unit tests (tests/unit) need none of this.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.helpers import bearer, new_api_key
from tests.processes import Process, start_api, start_worker
from tests.services import (
    PG_HOST,
    PG_PORT,
    REDIS_HOST,
    REDIS_PORT,
    START_POSTGRES,
    START_REDIS,
    ensure_up,
    free_port,
)

ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
REDIS_TEST_DB = 9


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults-results",
        type=Path,
        default=None,
        help="write the fault tests' record here (benchmarks/results/faults.json to update the committed "
        "one); by default it goes to the session's temporary directory, so `make test` changes no tracked file",
    )


def _settings_env(tmp: Path, database_url: str, queue: str) -> dict[str, str]:
    return {
        "UNLEARND_ENV": "test",
        "UNLEARND_DATABASE_URL": database_url,
        "UNLEARND_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}",
        "UNLEARND_QUEUE_NAME": queue,
        "UNLEARND_ARTIFACT_DIR": str(tmp / "artifacts"),
        "UNLEARND_SIGNING_KEY_FILE": str(tmp / "signing-key.pem"),
        "UNLEARND_DEVICE": "cpu",
        "UNLEARND_BATCH_FLUSH_INTERVAL_S": "0.1",
        "UNLEARND_JOB_LEASE_SECONDS": "15",
        "UNLEARND_RECONCILE_QUEUED_AFTER_S": "1",
        "UNLEARND_LOG_LEVEL": "INFO",
        "UNLEARND_LOG_FORMAT": "json",  # test_operations reads the API and worker logs as JSON lines
    }


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A fresh, migrated Postgres database and a private queue; sets this process's env too."""
    ensure_up("Postgres", PG_HOST, PG_PORT, START_POSTGRES)
    ensure_up("Redis", REDIS_HOST, REDIS_PORT, START_REDIS)
    name = f"unlearnd_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    env = _settings_env(tmp_path_factory.mktemp("stack"), url, f"unlearnd-test-{uuid.uuid4().hex[:8]}")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _clear_caches()
    from app.db.migrate import upgrade_to_head

    upgrade_to_head(url)
    yield env
    from app.db import get_engine

    get_engine().dispose()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _clear_caches()
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clear_caches() -> None:
    from app.certificates.keys import signing_key
    from app.db import session
    from app.queue import celery_app
    from app.settings import get_settings
    from app.storage.local import get_artifact_store

    caches = (get_settings, session._engine_for, session._session_factory, session._read_session_factory, signing_key)
    for cached in (*caches, celery_app, get_artifact_store):
        cached.cache_clear()


def _process_env(stack_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARND_")}
    env.update(stack_env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def worker(stack_env, tmp_path_factory) -> Iterator[Process]:
    proc = start_worker(_process_env(stack_env), "test", tmp_path_factory.mktemp("logs") / "worker.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def api_url(stack_env, worker, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    proc = start_api(_process_env(stack_env), port, tmp_path_factory.mktemp("logs") / "api.log")
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session")
def admin_key(stack_env) -> str:
    """An admin key of the default tenant: what the `client` fixture sends."""
    return new_api_key("default", ["admin"], name="tests-admin")


@pytest.fixture(scope="session")
def client(api_url, admin_key) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60, headers=bearer(admin_key)) as c:
        yield c


@pytest.fixture
def db(stack_env):
    """A session on the test database, for assertions the API does not expose (row counts, files)."""
    from app.db import new_session

    session = new_session()
    yield session
    session.rollback()
    session.close()
