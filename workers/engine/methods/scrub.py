"""scrub (Kurmanji et al., NeurIPS 2023, "Towards Unbounded Machine Unlearning"): the source model,
frozen, is the teacher; the model being unlearned is the student. Each epoch alternates

- max steps over the forget set: maximise KL(teacher || student) at temperature T;
- min steps on retain batches: minimise alpha * KL(teacher || student) + gamma * cross-entropy.

Departures from the public code (measurements: docs/decisions/scrub.md):

- the student starts equal to the teacher, where the KL gradient is zero (to rounding): the first max step
  ascends the forget rows' cross-entropy instead (``first_step``);
- Adam with one state per phase: under SGD the KL ascent grows exponentially and overshoots, and
  momentum carried from one phase into the other keeps pushing the wrong way;
- calibrated max steps: a row takes part only until it reaches its target (class scope: the label's
  probability at or below chance, per row; sample scope: the batch's mean loss at the held-out loss
  of its classes), and a class-scope run ends with one more max pass;
- min steps per epoch cover ``retain_per_forget`` retain rows per forget row (at most the retain
  set), not a whole retain epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from workers.engine.methods.base import UnlearningMethod, UnlearningTask
from workers.engine.methods.catalog import ScrubParams, ScrubSpec
from workers.engine.methods.common import endless_batches
from workers.engine.metrics import mean_loss
from workers.engine.parameters import frozen_norm_statistics
from workers.engine.training import Stepper, seed_everything, shuffled_batches, steps_per_epoch

# (student logits, labels) -> which rows still take part in the max steps
PendingRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Scrub(ScrubSpec, UnlearningMethod):
    def planned_steps(self, task: UnlearningTask, params: ScrubParams) -> int:
        """At most this many: calibrated max passes skip batches already at their target."""
        forget = steps_per_epoch(len(task.forget), params.forget_batch_size)
        passes = _max_epochs(params) + (1 if _final_max_pass(task, params) else 0)
        return passes * forget + params.epochs * _min_steps(task, params)

    def run(self, task: UnlearningTask, params: ScrubParams) -> nn.Module:
        seed_everything(params.seed)
        game = _Game(task, params)
        task.model.train()
        with frozen_norm_statistics(task.model):
            for epoch in range(params.epochs):
                if epoch < _max_epochs(params):
                    game.max_pass(epoch)
                game.min_steps(epoch)
            if _final_max_pass(task, params):
                game.max_pass(params.epochs)
        task.progress.settle()
        task.extra_metrics.update(
            scrub_max_steps=game.max_steps, scrub_min_steps=game.min_steps_taken, scrub_skipped_batches=game.skipped
        )
        return task.model.eval()


class _Game:
    """One run's state: the frozen teacher, the student (``task.model``) and one optimiser per phase."""

    def __init__(self, task: UnlearningTask, params: ScrubParams):
        self.task, self.params = task, params
        self.generator = torch.Generator().manual_seed(params.seed)
        self.teacher = frozen_teacher(task.model)
        weights = [p for p in task.model.parameters() if p.requires_grad]
        self.ascend = Stepper(weights, _optimizer(weights, params), task.progress)
        self.descend = Stepper(weights, _optimizer(weights, params), task.progress)
        self.retain = endless_batches(task.retain, params.retain_batch_size, self.generator)
        self.pending = _pending_rule(task, params)
        self.cross_entropy_next = params.first_step == "cross_entropy_ascent"
        self.max_steps = self.min_steps_taken = self.skipped = 0

    def max_pass(self, epoch: int) -> None:
        task, p = self.task, self.params
        for batch, rows in enumerate(shuffled_batches(len(task.forget), p.forget_batch_size, self.generator)):
            task.progress.check_cancel()
            x, y = task.forget.batch(rows)
            out = task.model(x)
            keep = self.pending(out.detach(), y)
            if not keep.any():
                self.skipped += 1
                continue
            keep = keep.float()
            with torch.no_grad():
                teacher = self.teacher(x)
            divergence = (_divergence(out, teacher, p.temperature) * keep).sum() / len(y)
            objective = -divergence
            if self.cross_entropy_next:
                objective = -(F.cross_entropy(out, y, reduction="none") * keep).sum() / len(y)
                self.cross_entropy_next = False
            self.ascend.step(objective, phase="max", epoch=epoch, batch=batch, samples=len(y), reported=divergence)
            self.max_steps += 1

    def min_steps(self, epoch: int) -> None:
        task, p = self.task, self.params
        for batch in range(_min_steps(task, p)):
            task.progress.check_cancel()
            r = next(self.retain)
            out = task.model(r.x)
            with torch.no_grad():
                teacher = self.teacher(r.x)
            objective = p.gamma * F.cross_entropy(out, r.y) + p.alpha * _divergence(out, teacher, p.temperature).mean()
            self.descend.step(objective, phase="min", epoch=epoch, batch=batch, samples=len(r))
            self.min_steps_taken += 1


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A copy of the source model that nothing trains: eval mode, no gradients."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row, KL(teacher || student) of the softened outputs, times T^2 (the public code's scale)."""
    log_student = F.log_softmax(student / temperature, dim=1)
    return F.kl_div(log_student, F.softmax(teacher / temperature, dim=1), reduction="none").sum(1) * temperature**2


def _pending_rule(task: UnlearningTask, params: ScrubParams) -> PendingRule:
    if not params.calibrated:
        return lambda out, y: torch.ones_like(y, dtype=torch.bool)
    if task.scope == "class_labels":
        # a model that never saw the classes gives their label no more than chance
        chance = math.log(task.num_classes)
        task.extra_metrics["calibration"] = {"rule": "row: label probability <= 1 / classes", "target_loss": chance}
        return lambda out, y: F.cross_entropy(out, y, reduction="none") < chance
    unseen = task.holdout_like_forget()
    if unseen is None:
        task.extra_metrics["calibration"] = {"note": "no held-out data of these classes: uncalibrated max steps"}
        return lambda out, y: torch.ones_like(y, dtype=torch.bool)
    # the batch mean, not each row: many unseen rows have a near-zero loss too
    level = mean_loss(task.model, unseen)
    task.extra_metrics["calibration"] = {
        "rule": "batch: mean loss >= held-out loss of its classes",
        "target_loss": level,
        "holdout_samples": len(unseen),
    }
    return lambda out, y: (F.cross_entropy(out, y) < level).expand(len(y))


def _optimizer(weights: list[nn.Parameter], params: ScrubParams) -> torch.optim.Optimizer:
    if params.optimizer == "adam":
        return torch.optim.Adam(weights, lr=params.lr, weight_decay=params.weight_decay)
    return torch.optim.SGD(weights, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)


def _max_epochs(params: ScrubParams) -> int:
    return params.epochs if params.max_epochs is None else params.max_epochs


def _min_steps(task: UnlearningTask, params: ScrubParams) -> int:
    rows = min(params.retain_per_forget * len(task.forget), len(task.retain))
    return math.ceil(rows / params.retain_batch_size)


def _final_max_pass(task: UnlearningTask, params: ScrubParams) -> bool:
    return task.scope == "class_labels" if params.final_max_pass is None else params.final_max_pass
