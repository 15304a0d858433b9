"""Embedded mode: the API, one in-process Celery worker and the reconciler in a single process, on a
SQLite file, an in-memory broker and a local artifact directory. It runs the same task code as the
full stack; only the transport differs. Nothing to install but the Python packages."""

from __future__ import annotations

import logging
import threading

import uvicorn
from celery.worker import WorkController

from app.core.tenancy import DEFAULT_TENANT
from app.db import commit, session_scope
from app.db.migrate import upgrade_to_head
from app.main import create_app
from app.observability.logs import configure_logging
from app.queue import celery_app, housekeeping_queue, job_queues
from app.settings import get_settings

log = logging.getLogger("unlearnd.embedded")
DEMO_MODEL = "digits-cnn"


def start_worker_thread() -> WorkController:
    import workers.celery_app  # noqa: F401  (registers the tasks)
    from workers.heartbeat import unique_node_name

    app = celery_app()
    app.finalize()
    app.set_current()
    worker = WorkController(
        app=app,
        pool="solo",
        concurrency=1,
        hostname=unique_node_name("embedded@localhost"),
        # one process is the whole service: it takes the jobs of every device class and housekeeping
        # messages too (the reconciler itself runs on a thread of its own, below, not through the broker)
        queues=[*job_queues(get_settings().queue_name), housekeeping_queue(get_settings().queue_name)],
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=get_settings().log_level,
    )
    threading.Thread(target=worker.start, name="celery-worker", daemon=True).start()
    return worker


def start_reconciler_thread() -> None:
    from workers.tasks import reconcile

    def loop() -> None:
        stop = threading.Event()
        while True:
            try:
                reconcile()
            except Exception:
                log.exception("reconcile pass failed")
            stop.wait(get_settings().reconcile_interval_s)

    threading.Thread(target=loop, name="reconciler", daemon=True).start()


def ensure_demo_model() -> str:
    """Register the digits dataset and a small CNN trained on it, once; return the model id."""
    from app.datasets import service as datasets
    from app.models import repository as models_repo
    from app.models import service as models
    from app.models.schemas import ModelSpec
    from workers.engine.recipe import TrainingRecipe

    with session_scope() as db:
        existing = models_repo.get_by_name(db, DEFAULT_TENANT, DEMO_MODEL)
        if existing:
            return str(existing.id)
        ds = datasets.register_builtin(
            db, builtin="digits", name="digits", tenant_id=DEFAULT_TENANT, actor="embedded-demo"
        )
        spec = ModelSpec(
            name=DEMO_MODEL,
            architecture="cnn_small",
            config={"channels": [16, 32], "hidden": 64},
            dataset_id=ds.id,
            recipe=TrainingRecipe(optimizer="sgd", lr=0.05, momentum=0.9, epochs=10, batch_size=32, seed=0),
        )
        model, _ = models.register_for_training(db, spec, tenant_id=DEFAULT_TENANT, actor="embedded-demo")
        commit(db)
        return str(model.id)


def demo_api_key() -> str:
    """An admin key of the default tenant for the person trying the service: a new one per start
    (the previous start's stops working), printed in the banner."""
    from app.auth import service as auth

    with session_scope() as db:
        secret = auth.replace_named_key(
            db, tenant_id=DEFAULT_TENANT, name="embedded-demo", scopes=["admin"], actor="embedded-demo"
        )
        commit(db)
    return secret


BANNER = """
unlearnd (embedded) on http://{host}:{port}   OpenAPI: http://{host}:{port}/docs
database {db}   artifacts {artifacts}

API key (admin, tenant "default"; a new one each start):
  export UNLEARND_KEY={api_key}

Demo model {name} ({model_id}) trains on scikit-learn's digits in a few seconds. Then, for example:
  curl -s -H "Authorization: Bearer $UNLEARND_KEY" http://{host}:{port}/v1/models/{model_id}
  curl -s -X POST http://{host}:{port}/v1/forget-requests -H "Authorization: Bearer $UNLEARND_KEY" \\
       -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' \\
       -d '{{"request_id": "demo-1", "model_id": "{model_id}", "scope": {{"class_labels": [3]}}, "method": "retrain"}}'
"""


def run_embedded() -> None:
    settings = get_settings()
    configure_logging(settings)
    upgrade_to_head()
    start_worker_thread()
    start_reconciler_thread()
    model_id = ensure_demo_model() if settings.demo else "(demo off)"
    api_key = demo_api_key()
    print(
        BANNER.format(
            host=settings.host,
            port=settings.port,
            db=settings.database_url,
            artifacts=settings.artifact_dir.resolve(),
            name=DEMO_MODEL,
            model_id=model_id,
            api_key=api_key,
        ),
        flush=True,
    )
    # log_config=None: keep our log setup (uvicorn would install its own); the request-id middleware
    # writes the access lines
    uvicorn.run(
        create_app(),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
    )
