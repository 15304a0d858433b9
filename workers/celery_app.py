"""The worker entry point: ``celery -A workers.celery_app worker``.

Importing this module must stay light: the worker parent process never imports torch or touches
CUDA (forked children would inherit a broken CUDA context); the task bodies import the engine.
"""

from __future__ import annotations

from app.queue import celery_app

app = celery_app()
app.conf.include = ["workers.tasks"]
import workers.tasks  # noqa: E402,F401  (registers the tasks)
