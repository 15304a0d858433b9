"""What a train job and an unlearn job do between claim and finish: build the inputs, run the engine,
measure. The orchestration around them (claim, verifying, the final transaction) is in execute.py.
These are the classifier bodies; a language model's are in lm_bodies.py (:func:`bodies_for` picks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from app.jobs.tables import Job
from app.settings import get_settings
from workers.engine.device import peak_memory_bytes, standard_layout
from workers.engine.methods import MethodParams, UnlearningMethod, UnlearningTask, get_method
from workers.engine.metrics import accuracies, verification
from workers.engine.recorder import UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything, steps_per_epoch, train
from workers.engine.update_log import UpdateLogManifest
from workers.runner.inputs import JobInputs
from workers.runner.update_logs import ArtifactChunkSink, DbUpdateLogReader


@dataclass
class Result:
    model: nn.Module
    metrics: dict[str, Any]
    update_log: UpdateLogManifest | None = None  # a train job's recorded updates
    consumed_steps: list[int] = field(default_factory=list)  # logged steps an unlearn job subtracted


def train_body(
    job: Job, inputs: JobInputs, device: torch.device, progress: Progress, started: float, verifying: Callable[[], None]
) -> Result:
    ds, recipe = inputs.dataset, inputs.recipe
    train_rows = ds.rows("train", exclude=inputs.erased_rows)
    data = inputs.tensors(train_rows, device)
    progress.total_steps = recipe.epochs * steps_per_epoch(len(data), recipe.batch_size)
    seed_everything(recipe.seed)
    model = inputs.build_model(device)
    recorder = None
    if inputs.update_log_spec is not None:
        recorder = UpdateRecorder(
            model, ds.ids[train_rows].tolist(), inputs.update_log_spec, ArtifactChunkSink(), data=data
        )
    model = train(model, data, recipe, progress=progress, phase="train", observer=recorder)
    manifest = recorder.finish() if recorder else None
    wall = time.perf_counter() - started
    verifying()
    test = inputs.tensors(ds.rows("test"), device)
    with standard_layout(model):
        metrics = accuracies(model, {"train": data, "test": test})
    metrics.update(cost(progress, wall, device), counts={"train": len(data), "test": len(test)})
    if manifest is not None:
        metrics["update_log"] = update_log_metrics(manifest)
    return Result(model, metrics, update_log=manifest)


def unlearn_body(
    job: Job, inputs: JobInputs, device: torch.device, progress: Progress, started: float, verifying: Callable[[], None]
) -> Result:
    ds = inputs.dataset
    method = get_method(job.method)
    params = method.parse_params(job.params)
    class_scope = inputs.scope_type == "class_labels"
    train_rows = ds.rows("train", exclude=inputs.erased_rows)
    forget_rows = ds.rows("train", labels=inputs.scope_values) if class_scope else ds.indices_of(inputs.scope_values)
    retain_rows = np.setdiff1d(train_rows, forget_rows)
    kept_classes = np.unique(ds.y[retain_rows])
    sets = {
        "forget": inputs.tensors(forget_rows, device, with_ids=True),
        "retain": inputs.tensors(retain_rows, device),
        "test": inputs.tensors(ds.rows("test", labels=kept_classes), device),
    }
    if class_scope:
        sets["forget_class_test"] = inputs.tensors(ds.rows("test", labels=inputs.scope_values), device)
    eval_sets = {**sets, "retain": sample_rows(sets["retain"], get_settings().eval_retain_max_rows)}
    unseen = inputs.tensors(ds.rows("test", labels=np.unique(ds.y[forget_rows])), device)

    source = inputs.load_source_model(device)

    def measure(model: nn.Module) -> dict[str, Any]:
        return _verification(model, eval_sets, unseen)

    task = UnlearningTask(
        model=source,
        build_model=lambda: inputs.build_model(device),
        recipe=inputs.recipe,
        forget=sets["forget"],
        retain=sets["retain"],
        scope=inputs.scope_type,
        num_classes=inputs.num_classes,
        device=device,
        progress=progress,
        forget_classes=tuple(int(c) for c in inputs.scope_values) if class_scope else (),
        holdout=inputs.tensors(ds.rows("test"), device),
        update_log=DbUpdateLogReader(inputs.update_log_id) if inputs.update_log_id else None,
    )
    return run_and_measure(method, params, task, measure, eval_sets, started, verifying)


def run_and_measure(
    method: UnlearningMethod,
    params: MethodParams,
    task: UnlearningTask,
    measure: Callable[[nn.Module], dict[str, Any]],
    eval_sets: dict[str, LabelledTensors],
    started: float,
    verifying: Callable[[], None],
) -> Result:
    """Measure the source model (``before``), run the method, measure its model the same way."""
    before = measure(task.model)
    progress = task.progress
    progress.total_steps = method.planned_steps(task, params)
    model = method.run(task, params).eval()
    wall = time.perf_counter() - started
    verifying()
    metrics = measure(model)
    metrics.update(before=before, counts={k: len(v) for k, v in eval_sets.items()}, **task.extra_metrics)
    metrics.update(cost(progress, wall, task.device))
    return Result(model, metrics, consumed_steps=task.consumed_log_steps)


def _verification(model: nn.Module, sets: dict[str, LabelledTensors], unseen: LabelledTensors) -> dict[str, Any]:
    """Accuracies on every set, and membership inference: the forget set against unseen samples of
    the same classes. In the standard memory layout: exactly what a user reproduces from the checkpoint."""
    with standard_layout(model):
        return verification(model, sets, "forget", unseen)


def sample_rows(data: LabelledTensors, max_rows: int) -> LabelledTensors:
    if len(data) <= max_rows:
        return data
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:max_rows]
    return data.subset(rows)


def update_log_metrics(manifest: UpdateLogManifest) -> dict[str, Any]:
    return {
        "mode": manifest.config.mode,
        "steps": len(manifest.entries),
        "stored_bytes": manifest.stored_bytes,
        "dense_bytes": manifest.dense_bytes,
        "storage_ratio": round(manifest.storage_ratio, 6),
        "gradient_bytes": manifest.gradient_bytes,
    }


def cost(progress: Progress, wall: float, device: torch.device) -> dict[str, Any]:
    return {
        "wall_time_s": round(wall, 4),
        "steps": progress.step,
        "samples_seen": progress.samples_seen,
        "peak_memory_bytes": peak_memory_bytes(device),
        "device": str(device),
    }


def bodies_for(kind: str) -> tuple[Callable[..., Result], Callable[..., Result]]:
    """(train body, unlearn body) of an architecture kind."""
    if kind == "language_model":
        from workers.runner import lm_bodies

        return lm_bodies.train_body, lm_bodies.unlearn_body
    return train_body, unlearn_body
