"""The worker entry point: ``celery -A workers.celery_app worker``.

Importing this module must stay light: the worker parent process never imports torch or touches
CUDA (forked children would inherit a broken CUDA context); the task bodies import the engine.
"""

from __future__ import annotations

from celery.app.trace import setup_worker_optimizations
from celery.signals import celeryd_init, setup_logging, worker_process_init

from app.audit import sequencer
from app.observability.logs import configure_logging
from app.queue import celery_app
from app.settings import get_settings
from workers.heartbeat import WorkerHeartbeat, unique_node_name

app = celery_app()
app.conf.include = ["workers.tasks"]
app.steps["worker"].add(WorkerHeartbeat)
import workers.tasks  # noqa: E402,F401  (registers the tasks)


@setup_logging.connect
def _configure_logging(**_kwargs) -> None:
    """Celery's own setup is skipped when a receiver answers: the worker and beat log in the same
    format as the API (``UNLEARND_LOG_FORMAT``); pool children inherit it when forked."""
    configure_logging(get_settings())


@celeryd_init.connect
def _unique_node_name(instance, **_kwargs) -> None:
    """Every start names itself anew, before anything uses the name (workers/heartbeat.py says why);
    the pool's tasks read it from Celery's trace shortcuts, which were filled in just before."""
    instance.hostname = unique_node_name(instance.hostname)
    setup_worker_optimizations(instance.app, instance.hostname)


@worker_process_init.connect
def _chain_the_apis_events(**_kwargs) -> None:
    """The process that runs tasks (the pool child; the embedded mode's own process) chains what the
    API committed within ``UNLEARND_AUDIT_CHAIN_POLL_S``: the API leaves its events to the workers."""
    sequencer.chain_periodically(get_settings().audit_chain_poll_s)
