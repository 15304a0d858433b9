"""Embedded mode: the API, one in-process Celery worker and the reconciler in a single process, on a
SQLite file, an in-memory broker and a local artifact directory. It runs the same task code as the
full stack; only the transport differs. Nothing to install but the Python packages."""

from __future__ import annotations

import logging
import threading

import uvicorn
from celery.worker import WorkController

from app.db import commit, session_scope
from app.db.migrate import upgrade_to_head
from app.main import create_app
from app.queue import celery_app
from app.settings import get_settings

log = logging.getLogger("unlearnd.embedded")
DEMO_MODEL = "digits-cnn"


def start_worker_thread() -> WorkController:
    import workers.celery_app  # noqa: F401  (registers the tasks)

    app = celery_app()
    app.finalize()
    app.set_current()
    worker = WorkController(
        app=app,
        pool="solo",
        concurrency=1,
        hostname="embedded@localhost",
        queues=[get_settings().queue_name],
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
        existing = models_repo.get_by_name(db, DEMO_MODEL)
        if existing:
            return str(existing.id)
        ds = datasets.register_builtin(db, builtin="digits", name="digits", actor="embedded-demo")
        spec = ModelSpec(
            name=DEMO_MODEL,
            architecture="cnn_small",
            config={"channels": [16, 32], "hidden": 64},
            dataset_id=ds.id,
            recipe=TrainingRecipe(optimizer="sgd", lr=0.05, momentum=0.9, epochs=10, batch_size=32, seed=0),
        )
        model, _ = models.register_for_training(db, spec, actor="embedded-demo")
        commit(db)
        return str(model.id)


BANNER = """
unlearnd (embedded) on http://{host}:{port}   OpenAPI: http://{host}:{port}/docs
database {db}   artifacts {artifacts}

Demo model {name} ({model_id}) trains on scikit-learn's digits in a few seconds. Then, for example:
  curl -s http://{host}:{port}/v1/models/{model_id}
  curl -s -X POST http://{host}:{port}/v1/forget-requests -H 'Content-Type: application/json' \\
       -H 'Idempotency-Key: demo-1' \\
       -d '{{"request_id": "demo-1", "model_id": "{model_id}", "scope": {{"class_labels": [3]}}, "method": "retrain"}}'
"""


def run_embedded() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    upgrade_to_head()
    start_worker_thread()
    start_reconciler_thread()
    model_id = ensure_demo_model() if settings.demo else "(demo off)"
    print(
        BANNER.format(
            host=settings.host,
            port=settings.port,
            db=settings.database_url,
            artifacts=settings.artifact_dir.resolve(),
            name=DEMO_MODEL,
            model_id=model_id,
        ),
        flush=True,
    )
    uvicorn.run(create_app(), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
