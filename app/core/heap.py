"""Keep the garbage collector off the objects the API builds at start.

The API imports torch (the method registry describes each method's params), FastAPI, SQLAlchemy and
pydantic: some 270,000 objects that live as long as the process. Python's oldest-generation
collection walks every one of them, and on this machine that took 60-220 ms with every thread
stopped: at 50 clients the slowest POSTs were those that waited through one (the service benchmark,
benchmarks/results/service.md). ``gc.freeze()`` moves them to a permanent generation that
collections skip; what requests allocate is collected as before.
"""

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
