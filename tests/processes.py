"""Start and stop the real processes the tests drive: the API (uvicorn) and a Celery worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.node_name = ""  # a worker's Celery node name, once it said it is ready
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not log {needle!r}:\n{self.log_tail()}")

    def wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {url}:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def start_api(env: dict[str, str], port: int, log_path: Path, workers: int = 1) -> Process:
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if workers > 1:
        args += ["--workers", str(workers)]
    api = Process("api", args, env, log_path)
    api.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    return api


def start_worker(env: dict[str, str], name: str, log_path: Path, queues: list[str] | None = None) -> Process:
    """A worker of every device class's job queue (``queues``: others instead); ``node_name`` is what
    it named itself (``name`` plus a suffix of this start's own, workers/heartbeat.py)."""
    from app.queue import job_queues

    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        "--loglevel=INFO",
        "-n",
        f"{name}@%h",
        "-Q",
        ",".join(queues or job_queues(env["UNLEARND_QUEUE_NAME"])),
    ]
    worker = Process("worker", args, env, log_path)
    worker.wait_for_log(" ready.", timeout=60)
    worker.node_name = re.search(rf"({re.escape(name)}\S*@\S+) ready\.", worker.log_path.read_text()).group(1)
    return worker


def start_housekeeping_worker(env: dict[str, str], log_path: Path) -> Process:
    """What docker-compose's ``housekeeping`` service runs: the reconciler and purges that beat sends,
    on a queue no job waits in."""
    from app.queue import housekeeping_queue

    return start_worker(env, "housekeeping", log_path, queues=[housekeeping_queue(env["UNLEARND_QUEUE_NAME"])])
