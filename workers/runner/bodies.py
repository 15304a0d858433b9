"""What a train job and an unlearn job do between claim and finish: build the inputs, run the engine,
measure. The orchestration around them (claim, verifying, the final transaction) is in execute.py,
an unlearn job's attempts and their verification in attempts.py. These are the classifier bodies; a
language model's are in lm_bodies.py (:func:`bodies_for` picks).

Held-out rows have two roles (workers/engine/holdout.py): methods get only the calibration rows
(``UnlearningTask.holdout``); reported test figures and the gate read only the evaluation rows."""

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
from workers.engine.methods import UnlearningTask
from workers.engine.metrics import accuracies, verification
from workers.engine.recorder import UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything, steps_per_epoch, train
from workers.engine.update_log import UpdateLogManifest
from workers.engine.verification.gate import GateData
from workers.runner.attempts import Hooks, VerificationFailed, job_plan, job_policy, run_attempts
from workers.runner.inputs import JobInputs
from workers.runner.update_logs import ArtifactChunkSink, DbUpdateLogReader


@dataclass
class Result:
    model: nn.Module
    metrics: dict[str, Any]
    update_log: UpdateLogManifest | None = None  # a train job's recorded updates
    consumed_steps: list[int] = field(default_factory=list)  # logged steps an unlearn job subtracted


def train_body(
    job: Job, inputs: JobInputs, device: torch.device, progress: Progress, started: float, hooks: Hooks
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
    hooks.verifying()
    test = inputs.tensors(ds.held_out("evaluation"), device)  # the rows every unlearn job reports on
    with standard_layout(model):
        metrics = accuracies(model, {"train": data, "test": test})
    metrics.update(cost(progress, wall, device), counts={"train": len(data), "test": len(test)})
    if manifest is not None:
        metrics["update_log"] = update_log_metrics(manifest)
    return Result(model, metrics, update_log=manifest)


def unlearn_body(
    job: Job, inputs: JobInputs, device: torch.device, progress: Progress, started: float, hooks: Hooks
) -> Result:
    ds = inputs.dataset
    class_scope = inputs.scope_type == "class_labels"
    train_rows = ds.rows("train", exclude=inputs.erased_rows)
    forget_rows = ds.rows("train", labels=inputs.scope_values) if class_scope else ds.indices_of(inputs.scope_values)
    retain_rows = np.setdiff1d(train_rows, forget_rows)
    kept_classes = np.unique(ds.y[retain_rows])
    forget_classes = np.unique(ds.y[forget_rows])
    sets = {
        "forget": inputs.tensors(forget_rows, device, with_ids=True),
        "retain": inputs.tensors(retain_rows, device),
        "test": inputs.tensors(ds.held_out("evaluation", labels=kept_classes), device),
    }
    if class_scope:
        sets["forget_class_test"] = inputs.tensors(ds.held_out("evaluation", labels=inputs.scope_values), device)
    eval_sets = {**sets, "retain": sample_rows(sets["retain"], get_settings().eval_retain_max_rows)}
    unseen = inputs.tensors(ds.held_out("evaluation", labels=forget_classes), device)
    calibration = inputs.tensors(ds.held_out("calibration"), device)
    data = GateData(
        forget=sets["forget"],
        evaluation=inputs.tensors(ds.held_out("evaluation"), device),
        scope=inputs.scope_type,
        forget_classes=tuple(int(c) for c in inputs.scope_values) if class_scope else (),
    )
    log = DbUpdateLogReader(inputs.update_log_id) if inputs.update_log_id else None

    def new_task(model: nn.Module) -> UnlearningTask:
        return UnlearningTask(
            model=model,
            build_model=lambda: inputs.build_model(device),
            recipe=inputs.recipe,
            forget=sets["forget"],
            retain=sets["retain"],
            scope=inputs.scope_type,
            num_classes=inputs.num_classes,
            device=device,
            progress=progress,
            forget_classes=data.forget_classes,
            holdout=calibration,  # the only held-out rows a method may read
            update_log=log,
        )

    return verified_result(
        job,
        inputs,
        new_task,
        lambda model: _verification(model, eval_sets, unseen),
        data,
        eval_sets,
        hooks,
        started,
        device,
        reference_rows=len(unseen),
        roles={"calibration": len(calibration), "evaluation": len(data.evaluation)},
    )


def verified_result(
    job: Job,
    inputs: JobInputs,
    new_task: Callable[[nn.Module], UnlearningTask],
    measure: Callable[[nn.Module], dict[str, Any]],
    data: GateData,
    eval_sets: dict[str, LabelledTensors],
    hooks: Hooks,
    started: float,
    device: torch.device,
    *,
    reference_rows: int,
    roles: dict[str, int],
) -> Result:
    """Plan the attempts and run them from the source model; counts and cost join the metrics of
    the kept model, or of the failure that :class:`VerificationFailed` carries."""
    policy = job_policy(job)
    source = inputs.load_source_model(device)
    probe = new_task(source)  # what every attempt's task shares: the update log, the progress
    steps, notes = job_plan(
        job,
        scope=data.scope,
        kind=data.kind,
        log=probe.update_log,
        forget_rows=len(data.forget),
        reference_rows=reference_rows,
        policy=policy,
        data_gone=inputs.scope_erased_from_file,
    )
    progress = probe.progress
    extra = {"counts": {k: len(v) for k, v in eval_sets.items()}}
    try:
        kept = run_attempts(
            job,
            steps,
            notes,
            source=source,
            new_task=new_task,
            measure=measure,
            data=data,
            policy=policy,
            hooks=hooks,
            roles=roles,
        )
    except VerificationFailed as failure:
        failure.metrics.update(extra, **cost(progress, time.perf_counter() - started, device))
        raise
    kept.metrics.update(extra, **cost(progress, time.perf_counter() - started, device))
    return Result(kept.model, kept.metrics, consumed_steps=kept.consumed_steps)


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
