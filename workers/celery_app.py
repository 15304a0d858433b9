"""The worker entry point: ``celery -A workers.celery_app worker``.

Importing this module must stay light: the worker parent process never imports torch or touches
CUDA (forked children would inherit a broken CUDA context); the task bodies import the engine.
"""

from __future__ import annotations

from celery.signals import setup_logging, worker_process_init

from app.observability.logs import configure_logging
from app.queue import celery_app
from app.settings import get_settings
from workers.heartbeat import WorkerHeartbeat
from workers.priority import lower_cpu_priority

app = celery_app()
app.conf.include = ["workers.tasks"]
app.steps["worker"].add(WorkerHeartbeat)
import workers.tasks  # noqa: E402,F401  (registers the tasks)


@setup_logging.connect
def _configure_logging(**_kwargs) -> None:
    """Celery's own setup is skipped when a receiver answers: the worker and beat log in the same
    format as the API (``UNLEARND_LOG_FORMAT``); pool children inherit it when forked."""
    configure_logging(get_settings())


@worker_process_init.connect
def _run_jobs_below_the_api(**_kwargs) -> None:
    """The pool child that runs jobs yields CPU to the API if the operator asked for it
    (workers/priority.py); the embedded mode's solo pool fires this in the API's own process, which
    lower_cpu_priority leaves alone."""
    lower_cpu_priority(get_settings().worker_cpu_priority)
