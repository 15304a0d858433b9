"""Keep the garbage collector off the objects the API builds at start: ~140,000 (FastAPI, SQLAlchemy,
pydantic; no torch) that a full collection walks in ~90 ms, all threads stopped. It pays: at 50 clients
POST p99 88 ms with it, 136 without (benchmarks/results/service-gc-freeze/)."""

from __future__ import annotations

import gc

# Python's default is (700, 10, 10): a full collection every 100 young ones
THRESHOLDS = (700, 10, 1000)
_frozen = False


def freeze_startup_objects() -> None:
    """Once per process (tests build many apps in one process; the first build freezes the imports)."""
    global _frozen
    if not _frozen:
        gc.collect()  # what start-up left as garbage is freed, not frozen
        gc.freeze()
        gc.set_threshold(*THRESHOLDS)
        _frozen = True
