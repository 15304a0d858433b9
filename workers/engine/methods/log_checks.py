"""Is the update log still complete for the forget set? amnesiac subtracts every recorded step of
it and first-epoch gradient ascent averages every forget sample's recorded gradient: with part of
that gone (purged by an earlier erasure, never recorded) either would leave influence in the model
while reporting success, so both refuse instead (:class:`IncompleteUpdateLog`)."""

from __future__ import annotations

from workers.engine.methods.base import IncompleteUpdateLog, UnlearningTask
from workers.engine.training import steps_per_epoch_of
from workers.engine.update_log import LogCoverage


def forget_coverage(task: UnlearningTask, epoch: int | None = None) -> LogCoverage:
    """The log's coverage of the forget samples' training steps (of ``epoch`` only, if given)."""
    ids = task.forget.ids or []
    per_epoch = steps_per_epoch_of(ids, task.recipe.batch_size, group_by_ids=task.is_language_model)
    return task.update_log.coverage(ids, per_epoch, epoch=epoch)


def require_complete_steps(task: UnlearningTask) -> LogCoverage:
    """Every training step of every forget sample is live or already subtracted (or the sample was
    erased earlier), else :class:`IncompleteUpdateLog`."""
    coverage = forget_coverage(task)
    if not coverage.complete:
        raise IncompleteUpdateLog(coverage)
    return coverage


def require_first_epoch_steps(task: UnlearningTask) -> LogCoverage:
    """Every forget sample's first-epoch steps are live (their recorded gradients readable), unless
    the sample was erased earlier; else :class:`IncompleteUpdateLog`."""
    coverage = forget_coverage(task, epoch=0)
    if coverage.samples_not_live:
        raise IncompleteUpdateLog(coverage, gradients=True)
    return coverage
