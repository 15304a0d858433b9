"""A private stack for the benchmark: a fresh database built by the migrations, a queue of its own,
one Celery worker and the API, all real processes (the same helpers the tests use)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg

from app.db.migrate import upgrade_to_head
from tests.processes import Process, start_api, start_worker
from tests.services import PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT, START_POSTGRES, START_REDIS, ensure_up, free_port

ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"


class Stack:
    def __init__(self, api_workers: int = 1, extra_env: dict[str, str] | None = None):
        ensure_up("Postgres", PG_HOST, PG_PORT, START_POSTGRES)
        ensure_up("Redis", REDIS_HOST, REDIS_PORT, START_REDIS)
        self.db_name = f"unlearnd_bench_{uuid.uuid4().hex[:8]}"
        self.tmp = Path(tempfile.mkdtemp(prefix="unlearnd-service-bench-"))
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{self.db_name}"
        upgrade_to_head(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARND_")}
        env.update(
            PYTHONUNBUFFERED="1",
            UNLEARND_ENV="test",
            UNLEARND_DATABASE_URL=url,
            UNLEARND_BROKER_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/8",
            UNLEARND_QUEUE_NAME=f"unlearnd-bench-{uuid.uuid4().hex[:6]}",
            UNLEARND_ARTIFACT_DIR=str(self.tmp / "artifacts"),
            UNLEARND_DEVICE="cpu",
            UNLEARND_LOG_LEVEL="WARNING",
        )
        env.update(extra_env or {})
        self.processes: list[Process] = []
        try:
            self.processes.append(start_worker(env, "bench", self.tmp / "worker.log"))
            port = free_port()
            self.processes.append(start_api(env, port, self.tmp / "api.log", workers=api_workers))
            # the admin key an operator would bootstrap; every request of the benchmark sends it
            boot = [sys.executable, "-m", "app.cli", "bootstrap-admin", "--name", "benchmark"]
            secret = subprocess.run(boot, env=env, check=True, capture_output=True, text=True).stdout.strip()
        except BaseException:
            self.close()  # a stack that failed to start must not leave a worker behind
            raise
        self.dsn = f"host={PG_HOST} port={PG_PORT} user=postgres dbname={self.db_name}"
        self.url = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {secret}"}

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
