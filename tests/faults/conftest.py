"""Fault-injection fixtures: private Redis and Postgres servers, a stack (API, worker, beat) the test
owns, and the record of what each fault did (faults.json, rendered to faults.md; see fault_results).

Everything started here runs in its own process group and is stopped by the fixture that started it,
on failure too. Nothing here stops or restarts the machine's shared Postgres or Redis: a fault that
restarts a server restarts a private one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import ADMIN_DSN, _clear_caches
from tests.helpers import bearer
from tests.processes import Process, start_api, start_housekeeping_worker, start_worker
from tests.services import PG_HOST, PG_PORT, START_POSTGRES, ensure_up, free_port, port_open

# --- private servers ---------------------------------------------------------------------------


class PrivateRedis:
    """``redis-server`` on a free port, no persistence: a restart loses every message."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        _wait_port(self.port, up=True, what="private redis")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # as abrupt as a crash: nothing is saved anyway
            self.proc.wait(10)
        _wait_port(self.port, up=False, what="private redis")


class PrivatePostgres:
    """A throwaway cluster (initdb in a temp dir, owned by the postgres user) on its own port."""

    def __init__(self):
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="unlearnd-faults-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(
            [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"]
        )
        self.start()

    def _as_postgres(self, args: list[str]) -> None:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args} failed:\n{done.stdout}\n{done.stderr}")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "start"]
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_port(port: int, *, up: bool, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port) == up:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} on port {port} did not come {'up' if up else 'down'}")


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path_factory.mktemp("redis"))
    yield redis
    redis.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    yield pg
    pg.destroy()


# --- databases and the stack ---------------------------------------------------------------------


@contextlib.contextmanager
def shared_database() -> Iterator[str]:
    """A fresh database on the machine's shared Postgres, migrated, dropped afterwards."""
    ensure_up("Postgres", PG_HOST, PG_PORT, START_POSTGRES)
    name = f"unlearnd_faults_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Stack:
    """API, workers and beat of one fault test, on its database, broker and queue; this process's
    settings point at the same place while the stack is up (for keys and database assertions)."""

    def __init__(self, tmp: Path, database_url: str, redis_url: str, **overrides: str):
        self.tmp = tmp
        self.artifacts = tmp / "artifacts"
        self.env = {
            "UNLEARND_ENV": "test",
            "UNLEARND_DATABASE_URL": database_url,
            "UNLEARND_BROKER_URL": redis_url,
            "UNLEARND_QUEUE_NAME": f"unlearnd-faults-{uuid.uuid4().hex[:8]}",
            "UNLEARND_ARTIFACT_DIR": str(self.artifacts),
            "UNLEARND_SIGNING_KEY_FILE": str(tmp / "signing-key.pem"),
            "UNLEARND_DEVICE": "cpu",
            "UNLEARND_BATCH_FLUSH_INTERVAL_S": "0.1",
            "UNLEARND_JOB_LEASE_SECONDS": "5",
            "UNLEARND_WORKER_HEARTBEAT_INTERVAL_S": "1",
            "UNLEARND_RECONCILE_QUEUED_AFTER_S": "2",
            "UNLEARND_RECONCILE_INTERVAL_S": "1",
            "UNLEARND_LOG_LEVEL": "INFO",
            **overrides,
        }
        self.processes: list[Process] = []
        self._saved = {k: os.environ.get(k) for k in self.env}
        self._workers = 0
        self.api_url = ""
        self.key = ""

    # this process's settings ------------------------------------------------------------------
    def __enter__(self) -> Stack:
        os.environ.update(self.env)
        _clear_caches()
        from app.db.migrate import upgrade_to_head

        upgrade_to_head(self.env["UNLEARND_DATABASE_URL"])
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop(timeout=10)
        with contextlib.suppress(Exception):
            from app.db import get_engine

            get_engine().dispose()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _clear_caches()

    def process_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARND_")}
        env.update(self.env, PYTHONUNBUFFERED="1", **extra)
        return env

    # processes --------------------------------------------------------------------------------
    def start_api(self) -> str:
        port = free_port()
        self.processes.append(start_api(self.process_env(), port, self.tmp / f"api-{port}.log"))
        self.api_url = f"http://127.0.0.1:{port}"
        if not self.key:
            self.key = self.new_key()
        return self.api_url

    def start_worker(self, **extra: str) -> Process:
        self._workers += 1
        name = f"faults{self._workers}"
        proc = start_worker(self.process_env(**extra), name, self.tmp / f"worker-{self._workers}.log")
        self.processes.append(proc)
        return proc

    def start_beat(self) -> Process:
        """Beat and the worker of the housekeeping queue it sends to (as docker-compose runs them)."""
        self.processes.append(start_housekeeping_worker(self.process_env(), self.tmp / "housekeeping.log"))
        args = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel=INFO"]
        args += ["-s", str(self.tmp / "beat-schedule")]
        beat = Process("beat", args, self.process_env(), self.tmp / "beat.log")
        self.processes.append(beat)
        beat.wait_for_log("beat: Starting", timeout=60)
        return beat

    def new_key(self) -> str:
        from tests.helpers import new_api_key

        return new_api_key("default", ["admin"], name="faults")

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=timeout, headers=bearer(self.key))

    # database assertions ----------------------------------------------------------------------
    def query(self, sql: str, **params) -> list:
        from sqlalchemy import text

        from app.db import new_session

        db = new_session()
        try:
            return list(db.execute(text(sql), params).all())
        finally:
            db.rollback()
            db.close()

    def orphan_files(self) -> dict[str, list[str]]:
        """Checkpoint files no version row references, and staging leftovers of interrupted writes."""
        referenced = {row.artifact_key for row in self.query("SELECT artifact_key FROM model_versions")}
        root = self.artifacts
        checkpoints = (
            [str(p.relative_to(root)) for p in (root / "checkpoints").rglob("*") if p.is_file()]
            if (root / "checkpoints").exists()
            else []
        )
        staging = [p.name for p in (root / ".staging").glob("*")] if (root / ".staging").exists() else []
        return {"unreferenced_checkpoints": sorted(set(checkpoints) - referenced), "staging": staging}

    def missing_files(self) -> list[str]:
        """Version rows whose file is not in the store (purged versions excepted: deleted on purpose)."""
        rows = self.query("SELECT artifact_key FROM model_versions WHERE purged_at IS NULL")
        return [r.artifact_key for r in rows if not (self.artifacts / r.artifact_key).is_file()]


@pytest.fixture
def stack_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


# --- results -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fault_results(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[list[dict]]:
    """Each fault test appends one record; at the end they are written to faults.json and faults.md:
    the committed ones only when asked (``--faults-results benchmarks/results/faults.json``)."""
    records: list[dict] = []
    yield records
    if not records:
        return
    from benchmarks.faults_report import write_report

    path = request.config.getoption("--faults-results") or tmp_path_factory.mktemp("faults-results") / "faults.json"
    write_report(records, path)


def write_stack_logs(stack: Stack, request: pytest.FixtureRequest) -> None:  # pragma: no cover - debugging aid
    """On failure, print the tail of every process log of the stack."""
    for proc in stack.processes:
        print(f"--- {proc.name} ({proc.log_path}) ---\n{proc.log_tail(80)}")
