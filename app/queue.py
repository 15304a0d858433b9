"""The Celery app and how the service publishes jobs.

The API only publishes (by task name); workers/celery_app.py registers the task bodies on this same
app. Publishing happens after the job's row is committed (see app.db.session.on_commit); whatever
could not be published is re-sent by the reconciler, and a task whose job is no longer QUEUED does
nothing, so duplicates are harmless.

Jobs go to the queue of their device class (``<queue_name>.gpu``, ``<queue_name>.cpu``), decided
when the job is created (app.jobs.service.device_class_for) and kept on its row, so a re-send goes
where the first send went; workers pick the classes they serve with ``celery worker -Q``.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

from celery import Celery

from app.settings import Settings, get_settings

RUN_JOB = "unlearnd.run_job"
RECONCILE = "unlearnd.reconcile"
DEVICE_CLASSES = ("gpu", "cpu")


def job_queue(base: str, device_class: str) -> str:
    """The queue of one device class's jobs."""
    if device_class not in DEVICE_CLASSES:
        raise ValueError(f"unknown device class {device_class!r}")
    return f"{base}.{device_class}"


def job_queues(base: str) -> list[str]:
    """Every job queue: what a worker that serves all device classes consumes (tests, embedded)."""
    return [job_queue(base, c) for c in DEVICE_CLASSES]


def housekeeping_queue(job_queue: str) -> str:
    """Where every task but a job goes (the reconciler, purges, sweeps): a queue of its own, so a
    worker busy with a long job never holds them up; named after the job queue, as heartbeats are."""
    return f"{job_queue}.housekeeping"


def configure(app: Celery, settings: Settings) -> None:
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
        # a worker started without -Q serves the gpu queue (where every job went before device classes)
        task_default_queue=job_queue(settings.queue_name, "gpu"),
        task_routes=(_housekeeping_router(housekeeping_queue(settings.queue_name)),),
        task_ignore_result=True,  # Postgres is the only source of truth
        task_acks_late=True,  # a job whose worker dies is redelivered, not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one job at a time per process
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,  # GPU memory hygiene
        worker_hijack_root_logger=False,
        # A broker outage must not hang the API: fail fast, the reconciler re-sends later.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        task_serializer="json",
        accept_content=["json"],
        beat_schedule={
            "reconcile": {"task": RECONCILE, "schedule": float(settings.reconcile_interval_s)},
        },
    )


def _housekeeping_router(queue: str):
    def route(name: str, *_args, **_kwargs) -> dict[str, str] | None:
        return None if name == RUN_JOB else {"queue": queue}

    return route


@lru_cache
def celery_app() -> Celery:
    app = Celery("unlearnd")
    configure(app, get_settings())
    return app


def enqueue_job(job_id: uuid.UUID, device_class: str) -> None:
    """Publish the job to its device class's queue."""
    queue = job_queue(get_settings().queue_name, device_class)
    celery_app().send_task(RUN_JOB, args=[str(job_id)], task_id=str(job_id), queue=queue)


def broker_ping(timeout: float = 2.0) -> None:
    """Raise if the broker cannot be reached."""
    with celery_app().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
