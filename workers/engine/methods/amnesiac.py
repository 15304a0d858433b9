"""amnesiac (Graves, Nagisetty, Ganesh, AAAI 2021): subtract the recorded updates of every training
step whose batch held a sample of the forget set; optionally repair with a brief fine-tune. When the
log no longer holds all of those steps (an earlier erasure purged some without subtracting them, or
they were never recorded) it refuses (``IncompleteUpdateLog``, see ``log_checks``): subtracting the
rest would leave part of the forget set's influence in the model."""

from __future__ import annotations

from typing import Any

from workers.engine.amnesia import subtract_steps
from workers.engine.methods.base import UnlearningMethod, UnlearningTask
from workers.engine.methods.catalog import AmnesiacParams, AmnesiacSpec
from workers.engine.methods.log_checks import require_complete_steps
from workers.engine.training import seed_everything, steps_per_epoch, train

REPAIR_THRESHOLD = 0.01  # the paper: with <= 1% of batches removed, accuracy holds without repair


def _steps_to_remove(task: UnlearningTask) -> list[int]:
    return task.update_log.steps_containing(task.forget.ids or [])


def repair_epochs(params: AmnesiacParams, removed: int, recorded: int) -> int:
    if params.repair_epochs is not None:
        return params.repair_epochs
    return 1 if recorded and removed / recorded > REPAIR_THRESHOLD else 0


def run_subtraction(task: UnlearningTask, params: AmnesiacParams, prune_top_p: float | None) -> Any:
    """Shared by amnesiac and partial_amnesiac: subtract, repair if asked, report what was read."""
    log = task.update_log
    coverage = require_complete_steps(task)  # before anything changes: a refusal leaves the model as it was
    steps = _steps_to_remove(task)
    epochs = repair_epochs(params, len(steps), log.recorded_steps)
    task.progress.total_steps = len(steps) + epochs * steps_per_epoch(len(task.retain), task.recipe.batch_size)
    entries = subtract_steps(task.model, log, steps, task.progress, prune_top_p=prune_top_p)
    task.consumed_log_steps = steps
    if epochs:
        seed_everything(params.seed)
        train(
            task.model,
            task.retain,
            task.recipe,
            progress=task.progress,
            phase="repair",
            epochs=epochs,
            lr=params.repair_lr,
            seed=params.seed,
            objective=task.objective,
            group_by_ids=task.is_language_model,
        )
    task.extra_metrics.update(
        update_log_mode=log.config.mode if prune_top_p is None else f"{log.config.mode}, pruned on read",
        update_log_steps_removed=len(steps),
        # complete: what was not removed now had been subtracted before, or its sample erased before
        update_log_steps_subtracted_before=coverage.steps_subtracted,
        update_log_samples_erased_before=coverage.samples_erased,
        update_log_steps_recorded=log.recorded_steps,
        update_log_entries_subtracted=entries,
        update_log_bytes_read=log.bytes_read,
        update_log_storage_ratio=round(log.storage_ratio, 6),
        repair_epochs=epochs,
    )
    return task.model.eval()


class Amnesiac(AmnesiacSpec, UnlearningMethod):
    def planned_steps(self, task: UnlearningTask, params: AmnesiacParams) -> int:
        return len(_steps_to_remove(task))

    def run(self, task: UnlearningTask, params: AmnesiacParams):
        return run_subtraction(task, params, prune_top_p=None)
