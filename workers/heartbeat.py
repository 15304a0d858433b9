"""The worker's heartbeat: a Celery bootstep that runs a thread in the worker's main process.

The main process, not the pool child: it is alive as long as the node is, it knows which job its
pool is running (``celery.worker.state.active_requests``; task id = job id), and it never imports
torch, so a child busy in a long CUDA kernel still has a node that beats. A child that hangs is the
job lease's business (renewed from the child, see workers/runner/reporting.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from celery import bootsteps
from celery.worker import state

from app.queue import DEVICE_CLASSES, RUN_JOB, job_queue
from app.settings import get_settings
from app.worker_status.store import HeartbeatStore, get_heartbeat_store, ttl_seconds
from workers.device_info import DeviceProbe

log = logging.getLogger(__name__)
POLL_S = 1.0  # how soon a new current job shows up (an in-memory look, no I/O)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def unique_node_name(configured: str) -> str:
    """The configured node name with a suffix of this start's own (``worker@host`` ->
    ``worker.3fa2c1@host``): a worker restarted under its predecessor's name beat for it, so the
    predecessor's job waited out its whole lease (118 s) instead of a heartbeat's lifetime (30 s)."""
    name, at, host = configured.partition("@")
    return f"{name}.{secrets.token_hex(3)}{at}{host}"


def current_job() -> dict[str, Any] | None:
    """The unlearnd job this node's pool is running, if any (the reconcile task is not a job)."""
    for _ in range(3):  # the consumer thread may change the set while we copy it
        try:
            running = [r for r in list(state.active_requests) if r.name == RUN_JOB]
            break
        except RuntimeError:
            continue
    else:
        return None
    if not running:
        return None
    request = running[0]  # concurrency is 1 per node (one process per GPU)
    return {"id": request.id, "started_at": _iso(request.time_start) if request.time_start else None}


def device_classes(queues: list[str]) -> list[str]:
    """The device classes whose job queues a worker consuming ``queues`` serves."""
    base = get_settings().queue_name
    return [c for c in DEVICE_CLASSES if job_queue(base, c) in queues]


class Beater:
    def __init__(
        self, name: str, queues: list[str], store: HeartbeatStore, interval_s: float, probe: DeviceProbe | None = None
    ):
        self.name = name
        self.store = store
        self.interval_s = interval_s
        self.probe = probe or DeviceProbe(get_settings().device, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.identity = {
            "name": name,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": queues,
            "device_classes": device_classes(queues),
            "started_at": _iso(time.time()),
        }
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)
        self._failing = False

    def beat(self, job: dict[str, Any] | None) -> None:
        beat = {**self.identity, "device": self.probe.read(), "last_beat_at": _iso(time.time()), "current_job": job}
        try:
            self.store.put(self.name, beat, ttl_seconds())
        except Exception as exc:  # Redis away: keep trying; log once per outage, not every second
            if not self._failing:
                log.warning("worker heartbeat failed: %s", type(exc).__name__)
            self._failing = True
            raise
        if self._failing:
            log.info("worker heartbeat restored")
        self._failing = False

    def _run(self) -> None:
        last_job: object = object()
        last_beat = 0.0
        while True:
            job = current_job()
            if self._stopping.is_set() and job is None:
                with contextlib.suppress(Exception):  # Redis away: the key expires on its own
                    self.store.remove(self.name)  # a clean shutdown leaves at once; a crash, by expiry
                return
            if job != last_job or time.monotonic() - last_beat >= self.interval_s:
                with contextlib.suppress(Exception):  # logged in beat(); retried next poll
                    self.beat(job)
                    last_job, last_beat = job, time.monotonic()
            time.sleep(min(POLL_S, self.interval_s))

    def start(self) -> None:
        self._thread.start()
        log.info("worker heartbeat every %.0f s as %s", self.interval_s, self.name)

    def stop(self) -> None:
        """Leave once the pool is idle. A warm shutdown stops this step before the pool, which then
        finishes its job: the beats go on meanwhile, or the reconciler would take the job away from
        a worker that is about to complete it."""
        self._stopping.set()
        if current_job() is None:
            self._thread.join(timeout=3 * POLL_S)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Starts after the pool (children are forked before the thread exists), stops with the node."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.beater: Beater | None = None

    def start(self, worker) -> None:
        try:
            queues = sorted(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)
        except Exception:
            queues = [job_queue(get_settings().queue_name, "gpu")]  # the default queue
        if not device_classes(queues):
            return  # a housekeeping-only worker runs no job: it is not a worker the reconciler counts
        self.beater = Beater(worker.hostname, queues, get_heartbeat_store(), get_settings().worker_heartbeat_interval_s)
        self.beater.start()

    def stop(self, worker) -> None:
        if self.beater is not None:
            self.beater.stop()
            self.beater = None

    shutdown = stop
    terminate = stop
