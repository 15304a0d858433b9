"""unlearnd's engine: a pure-torch library of architectures, training, unlearning methods, metrics.

It imports neither FastAPI nor Celery nor the service (a test enforces this), so it works from a
notebook or a training script as well as from the worker.
"""
