"""Celery adapter (celery_app, tasks, job runner) and the pure-torch engine (workers.engine).

Keep this file empty of imports: the engine is used on its own, and the worker parent must not
import torch.
"""
