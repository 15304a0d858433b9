"""What may import what: the engine stays pure torch; the worker parent never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_imports_neither_fastapi_nor_celery_nor_the_service():
    engine_modules = sorted(
        "workers.engine." + ".".join(p.relative_to(ROOT / "workers" / "engine").with_suffix("").parts)
        for p in (ROOT / "workers" / "engine").rglob("*.py")
    )
    imports = "\n".join(f"import {m.removesuffix('.__init__')}" for m in engine_modules)
    loaded = _modules_after(imports)
    forbidden = {
        m for m in loaded if m.split(".")[0] in {"fastapi", "starlette", "celery", "kombu", "app", "sqlalchemy"}
    }
    assert not forbidden, forbidden
    assert "workers.runner" not in loaded and "workers.tasks" not in loaded


def test_worker_parent_does_not_import_torch():
    loaded = _modules_after("import workers.celery_app")
    assert "torch" not in loaded
    assert "workers.tasks" in loaded


def test_registered_tasks_are_pinned():
    code = (
        "import json\nfrom workers.celery_app import app\n"
        "print(json.dumps(sorted(t for t in app.tasks if not t.startswith('celery.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["unlearnd.reconcile", "unlearnd.run_job"]


def test_celery_delivery_settings():
    from app.queue import celery_app

    conf = celery_app().conf
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_ignore_result is True
    assert conf.broker_transport_options["visibility_timeout"] >= 3600
    assert conf.worker_max_tasks_per_child >= 1
    assert conf.beat_schedule["reconcile"]["task"] == "unlearnd.reconcile"
