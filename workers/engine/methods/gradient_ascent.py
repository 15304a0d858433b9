"""gradient_ascent (optimisation-based unlearning; seed papers 000 and 002): raise the loss on the
forget set, optionally holding a retain term, and stop by a calibrated criterion.

- ``gradients="current"``: ascend the forget-set cross-entropy at the current parameters.
- ``gradients="first_epoch"`` (seed paper 002): ascend along each forget sample's gradient at the
  state it was first seen in training, as recorded by the update recorder; where none was recorded
  the current model's gradient at the start stands in (``gradient_source`` in the metrics says which).
- ``layers`` restricts the update to named layers (e.g. the embedding); ``partial`` to the top-p
  entries per tensor.
- Calibrated stopping: for sample scope, ascend until the forget-set loss reaches the loss the model
  has on held-out samples of the same classes (comparable unseen data); for class scope (no unseen
  data of a forgotten class exists) until the forget-set accuracy falls to ``target_forget_accuracy``.
- ``fuzzy_threshold`` also ascends on retain samples whose embedding is that close (cosine) to a
  forget sample: near-duplicates that would otherwise keep the memory alive.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch.nn import functional as F

from workers.engine.evaluation import accuracy
from workers.engine.methods.base import UnlearningMethod, UnlearningTask
from workers.engine.methods.common import PartialParams, endless_batches, guard_for, penultimate_features
from workers.engine.metrics import mean_loss
from workers.engine.parameters import frozen_norm_statistics, select_parameters, summed_gradients
from workers.engine.tensors import LabelledTensors
from workers.engine.training import Stepper, seed_everything, shuffled_batches, steps_per_epoch


class GradientAscentParams(PartialParams):
    lr: float | None = Field(
        None,
        gt=0,
        le=100,
        description="SGD learning rate of the ascent (default 0.01 with "
        "current gradients; 0.5 with first-epoch ones, a fixed direction that tolerates "
        "longer steps).",
    )
    batch_size: int | None = Field(None, ge=1, le=65536, description="Forget batch size (default: the recipe's).")
    max_epochs: int = Field(20, ge=1, le=1000, description="Cap on passes over the forget set.")
    retain_weight: float = Field(
        1.0, ge=0, le=100, description="Weight of a cross-entropy term on a retain batch per step (0: pure ascent)."
    )
    gradients: Literal["current", "first_epoch"] = Field(
        "current", description="Ascent direction: the current gradient, or each sample's first-epoch gradient."
    )
    stop: Literal["calibrated", "max_epochs"] = Field(
        "calibrated", description="calibrated: stop at the level of unseen data; max_epochs: run the cap."
    )
    target_forget_accuracy: float = Field(
        0.0, ge=0, le=1, description="Class scope: stop once the forget-set accuracy is at or below this."
    )
    check_every: int = Field(1, ge=1, le=100_000, description="Steps between calibration checks.")
    probe_samples: int = Field(
        512,
        ge=16,
        le=1_000_000,
        description="Calibration checks measure a seeded "
        "random subset of this many forget samples (the whole set if smaller).",
    )
    fuzzy_threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Also unlearn retain samples at least this cosine-similar to a forget sample (near-duplicates).",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the batch order.")


class GradientAscent(UnlearningMethod):
    name = "gradient_ascent"
    summary = "Ascend the forget-set loss (current or first-epoch gradients) until it reaches unseen-data level."
    Params = GradientAscentParams

    def planned_steps(self, task: UnlearningTask, params: GradientAscentParams) -> int:
        return params.max_epochs * steps_per_epoch(len(task.forget), params.batch_size or task.recipe.batch_size)

    def run(self, task: UnlearningTask, params: GradientAscentParams):
        seed_everything(params.seed)
        generator = torch.Generator().manual_seed(params.seed)
        model, bs = task.model, params.batch_size or task.recipe.batch_size
        forget, retain = _with_near_duplicates(task, params)
        recorded = _recorded_gradients(task, params)
        if recorded:  # ascend only where a first-epoch gradient was recorded
            params = params.model_copy(update={"layers": sorted(recorded)})
        guard = guard_for(task, params, forget, lambda out, y: F.cross_entropy(out, y, reduction="sum"))
        direction = None
        if params.gradients == "first_epoch":
            direction = _first_epoch_direction(task, recorded, forget, guard.allowed)
        allowed = list(guard.allowed.values())
        lr = params.lr or (0.5 if params.gradients == "first_epoch" else 0.01)
        stepper = Stepper(allowed, torch.optim.SGD(allowed, lr=lr), task.progress, guard)
        retain_stream = endless_batches(retain, bs, generator) if params.retain_weight and len(retain) else None
        done = _stopping_rule(task, params, forget)
        stop_reason = "max_epochs"
        model.train()
        try:
            with frozen_norm_statistics(model):
                for epoch in range(params.max_epochs):
                    for batch, rows in enumerate(shuffled_batches(len(forget), bs, generator)):
                        task.progress.check_cancel()
                        rows = rows.to(task.device)
                        forget_ce = F.cross_entropy(model(forget.x[rows]), forget.y[rows])
                        if direction is None:
                            objective = -forget_ce
                        else:  # a linear surrogate whose gradient is minus the recorded direction
                            objective = -sum((guard.allowed[n] * d).sum() for n, d in direction.items())
                        if retain_stream is not None:
                            r = next(retain_stream)
                            objective = objective + params.retain_weight * F.cross_entropy(model(r.x), r.y)
                        stepper.step(
                            objective,
                            reported=forget_ce.detach(),
                            phase="ascent",
                            epoch=epoch,
                            batch=batch,
                            samples=len(rows),
                        )
                        if done is not None and task.progress.step % params.check_every == 0 and done():
                            stop_reason = "calibrated"
                            break
                    else:
                        continue
                    break
        finally:
            guard.release()
        task.extra_metrics.update(stop_reason=stop_reason, ascent_steps=task.progress.step)
        return model.eval()


def _with_near_duplicates(
    task: UnlearningTask, params: GradientAscentParams
) -> tuple[LabelledTensors, LabelledTensors]:
    if params.fuzzy_threshold is None or len(task.retain) == 0:
        return task.forget, task.retain
    f = F.normalize(penultimate_features(task.model, task.forget.x).flatten(1), dim=1)
    r = F.normalize(penultimate_features(task.model, task.retain.x).flatten(1), dim=1)
    best = torch.cat([(r[i : i + 4096] @ f.T).max(1).values for i in range(0, len(r), 4096)])
    near = best >= params.fuzzy_threshold
    task.extra_metrics["fuzzy_added"] = int(near.sum())
    extra = task.retain.subset(near.nonzero()[:, 0].cpu())
    forget = LabelledTensors(torch.cat([task.forget.x, extra.x]), torch.cat([task.forget.y, extra.y]))
    return forget, task.retain.subset((~near).nonzero()[:, 0].cpu())


def _recorded_gradients(task: UnlearningTask, params: GradientAscentParams) -> dict[str, torch.Tensor] | None:
    """Summed recorded first-epoch gradients of the forget samples, limited to ``params.layers``."""
    if params.gradients != "first_epoch" or task.update_log is None:
        return None
    recorded = task.update_log.first_epoch_gradients(task.forget.ids or [])
    if not recorded:
        return None
    if params.layers is not None:
        keep = select_parameters(task.model, params.layers)
        recorded = {n: g for n, g in recorded.items() if n in keep}
    return recorded or None


def _first_epoch_direction(
    task: UnlearningTask, recorded: dict[str, torch.Tensor] | None, forget: LabelledTensors, allowed: dict
) -> dict[str, torch.Tensor]:
    """Mean per-sample gradient of the forget samples: as recorded in the first epoch, else current."""
    if recorded:
        task.extra_metrics["gradient_source"] = "recorded_first_epoch"
        return {name: (recorded[name] / len(task.forget)).to(task.device) for name in allowed}
    task.extra_metrics["gradient_source"] = "current_model_at_start"
    grads = summed_gradients(allowed, forget, lambda out, y: F.cross_entropy(out, y, reduction="sum"), task.model)
    return {name: g / len(forget) for name, g in grads.items()}


def _stopping_rule(task: UnlearningTask, params: GradientAscentParams, forget: LabelledTensors):
    if params.stop != "calibrated":
        return None
    probe = forget
    if len(forget) > params.probe_samples:  # checks run often: measure a fixed subset
        rows = torch.randperm(len(forget), generator=torch.Generator().manual_seed(params.seed))
        probe = forget.subset(rows[: params.probe_samples])
    if task.scope == "class_labels":
        task.extra_metrics["calibration"] = {
            "forget_accuracy_target": params.target_forget_accuracy,
            "probe_samples": len(probe),
        }
        return lambda: accuracy(task.model, probe) <= params.target_forget_accuracy
    unseen = task.holdout_like_forget()
    if unseen is None:
        task.extra_metrics["calibration"] = {"note": "no held-out data of these classes: ran to max_epochs"}
        return None
    target = mean_loss(task.model, unseen)
    task.extra_metrics["calibration"] = {
        "forget_loss_target": target,
        "holdout_samples": len(unseen),
        "probe_samples": len(probe),
    }
    return lambda: mean_loss(task.model, probe) >= target
