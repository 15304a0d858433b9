"""gradient_ascent (optimisation-based unlearning; seed papers 000 and 002): raise the loss on the
forget set, optionally holding a retain term, and stop by a calibrated criterion.

- ``gradients="current"``: ascend the forget-set cross-entropy at the current parameters.
- ``gradients="first_epoch"`` (seed paper 002): ascend along each forget sample's gradient at the
  state it was first seen in training, as recorded by the update recorder. Where the log records no
  first-epoch gradients for the layers, the current model's gradient at the start stands in
  (``gradient_source`` and ``gradient_source_reason`` in the metrics say which and why); where it
  records them but no longer for every forget sample (an earlier erasure removed the step), the job
  refuses (``IncompleteUpdateLog``) rather than count the missing ones as zeros.
- ``layers`` restricts the update to named layers (e.g. the embedding); ``partial`` to the top-p
  entries per tensor.
- Calibrated stopping: for sample scope, ascend until the forget-set loss reaches the loss the model
  has on held-out samples of the same classes (comparable unseen data); for class scope (no unseen
  data of a forgotten class exists) until the forget-set accuracy falls to ``target_forget_accuracy``.
  The check runs every ``check_every`` steps; ``stop="calibrated"`` with ``check_every=1`` (the
  default) is the iterative mode of seed paper 002: a small ascent step, then the check, repeated.
  With ``recalibrate`` the held-out loss is measured again every ``recalibrate_every`` steps, on a
  seeded subset of ``calibration_samples`` held-out rows (the calibration rows: a method never reads
  the evaluation rows).
- ``fuzzy_threshold`` also ascends on retain samples whose embedding is that close (cosine) to a
  forget sample: near-duplicates that would otherwise keep the memory alive.

Language models (``task.kind == "language_model"``, objective ``CAUSAL_LM``; the forget set is the
blocks of the forgotten documents): the loss is the next-token NLL; ``layers`` defaults to the token
embedding (``embedding``, GPT-2's ``transformer.wte``, tied to the output layer; seed paper 002) and
takes the GPT-2 group names (``embedding``, ``positions``, ``block0``.., ``final_norm``, ``all``) as
well as parameter-name prefixes; first-epoch gradients are the recorded per-document ones; the
calibration target is the mean token NLL of the holdout (held-out text; recalibrated by default),
compared with the forget set's mean token NLL. ``fuzzy_threshold`` (near-duplicates by a
classifier's embedding) does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from workers.engine.architectures.gpt2 import EMBEDDING_LAYERS, resolve_layer_groups
from workers.engine.evaluation import accuracy
from workers.engine.methods.base import MethodNotApplicable, UnlearningMethod, UnlearningTask
from workers.engine.methods.catalog import GradientAscentParams, GradientAscentSpec
from workers.engine.methods.common import endless_batches, guard_for, penultimate_features
from workers.engine.methods.log_checks import require_first_epoch_steps
from workers.engine.metrics import mean_loss
from workers.engine.parameters import frozen_norm_statistics, select_parameters, summed_gradients
from workers.engine.tensors import LabelledTensors
from workers.engine.training import Stepper, seed_everything, shuffled_batches, steps_per_epoch


class GradientAscent(GradientAscentSpec, UnlearningMethod):
    def planned_steps(self, task: UnlearningTask, params: GradientAscentParams) -> int:
        return params.max_epochs * steps_per_epoch(len(task.forget), params.batch_size or task.recipe.batch_size)

    def run(self, task: UnlearningTask, params: GradientAscentParams):
        seed_everything(params.seed)
        generator = torch.Generator().manual_seed(params.seed)
        model, bs = task.model, params.batch_size or task.recipe.batch_size
        params = _resolve_layers(task, params)
        forget, retain = _with_near_duplicates(task, params)
        recorded = _recorded_gradients(task, params)
        if recorded:  # ascend only where a first-epoch gradient was recorded
            params = params.model_copy(update={"layers": sorted(recorded.sums)})
        objective = task.objective
        guard = guard_for(task, params, forget, lambda out, y: objective.loss_from_output(out, y, reduction="sum"))
        direction = None
        if params.gradients == "first_epoch":
            direction = _first_epoch_direction(task, recorded, forget, guard.allowed)
        else:
            task.extra_metrics["gradient_source"] = "current_each_step"
        allowed = list(guard.allowed.values())
        lr = params.lr or (0.5 if params.gradients == "first_epoch" and not task.is_language_model else 0.01)
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
                        x, y = forget.batch(rows)
                        forget_ce = objective.loss(model, x, y)
                        if direction is None:
                            target = -forget_ce
                        else:  # a linear surrogate whose gradient is minus the recorded direction
                            target = -sum((guard.allowed[n] * d).sum() for n, d in direction.items())
                        if retain_stream is not None:
                            r = next(retain_stream)
                            target = target + params.retain_weight * objective.loss(model, r.x, r.y)
                        stepper.step(
                            target,
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
                task.progress.settle()
        finally:
            guard.release()
        task.extra_metrics.update(stop_reason=stop_reason, ascent_steps=task.progress.step)
        return model.eval()


def _resolve_layers(task: UnlearningTask, params: GradientAscentParams) -> GradientAscentParams:
    """``layers`` as parameter-name prefixes: group names resolved, ``all`` -> None (every layer);
    a language model's default is its token embedding."""
    layers = params.layers
    if task.is_language_model:
        layers = resolve_layer_groups(list(EMBEDDING_LAYERS) if layers is None else layers)
    elif layers is not None and "all" in layers:
        layers = None
    task.extra_metrics["ascent_layers"] = layers or "all"
    return params.model_copy(update={"layers": layers})


def _with_near_duplicates(
    task: UnlearningTask, params: GradientAscentParams
) -> tuple[LabelledTensors, LabelledTensors]:
    if params.fuzzy_threshold is not None and task.is_language_model:
        raise MethodNotApplicable(
            "fuzzy_threshold finds near-duplicates by a classifier's embedding; it does not apply to language models"
        )
    if params.fuzzy_threshold is None or len(task.retain) == 0:
        return task.forget, task.retain
    f = F.normalize(penultimate_features(task.model, task.forget).flatten(1), dim=1)
    r = F.normalize(penultimate_features(task.model, task.retain).flatten(1), dim=1)
    best = torch.cat([(r[i : i + 4096] @ f.T).max(1).values for i in range(0, len(r), 4096)])
    near = best >= params.fuzzy_threshold
    task.extra_metrics["fuzzy_added"] = int(near.sum())
    extra = task.retain.subset(near.nonzero()[:, 0].cpu())
    where = task.forget.x.device  # a streamed forget set stays in host memory
    forget = LabelledTensors(
        torch.cat([task.forget.x, extra.x.to(where)]),
        torch.cat([task.forget.y, extra.y.to(where)]),
        target=task.forget.target,
    )
    return forget, task.retain.subset((~near).nonzero()[:, 0].cpu())


@dataclass
class _Recorded:
    sums: dict[str, torch.Tensor]  # summed recorded first-epoch gradients, per parameter
    samples: int  # forget samples whose gradients were summed
    rows: int  # their rows in the forget set (a language model's: blocks): what the mean is over


def _recorded_gradients(task: UnlearningTask, params: GradientAscentParams) -> _Recorded | None:
    """The forget samples' summed recorded first-epoch gradients, limited to ``params.layers``; None
    when the log records none for these layers (the reason goes to the metrics). Raises
    :class:`IncompleteUpdateLog` when it records them but not for every forget sample any more."""
    if params.gradients != "first_epoch":
        return None
    why, ids = _why_not_recorded(task, params), []
    if why is None:
        coverage = require_first_epoch_steps(task)
        ids = [i for i in task.forget.ids or [] if i not in coverage.erased_ids]
        why = "every forget sample was erased earlier: no recorded gradient is left" if not ids else None
    if why is not None:
        task.extra_metrics["gradient_source_reason"] = why
        return None
    recorded = task.update_log.first_epoch_gradients(list(dict.fromkeys(ids))) or {}
    if params.layers is not None:
        keep = select_parameters(task.model, params.layers)
        recorded = {n: g for n, g in recorded.items() if n in keep}
    if not recorded:
        task.extra_metrics["gradient_source_reason"] = "no recorded gradient of the chosen layers was found"
        return None
    return _Recorded(recorded, samples=len(set(ids)), rows=len(ids))


def _why_not_recorded(task: UnlearningTask, params: GradientAscentParams) -> str | None:
    """Why the log cannot give first-epoch gradients for the chosen layers; None if it can."""
    if task.update_log is None:
        return "the model has no update log"
    logged = task.update_log.config.first_epoch_gradients
    if not logged:
        return "the update log records no first-epoch gradients"
    if params.layers is not None and not set(select_parameters(task.model, logged)) & set(
        select_parameters(task.model, params.layers)
    ):
        return f"the update log records first-epoch gradients of {', '.join(logged)} only, not of the chosen layers"
    return None


def _first_epoch_direction(
    task: UnlearningTask, recorded: _Recorded | None, forget: LabelledTensors, allowed: dict
) -> dict[str, torch.Tensor]:
    """Mean per-sample gradient of the forget samples (per block for a language model): as recorded
    in the first epoch (the mean over the rows whose gradients were summed), else current.

    A language model's recorded direction is rescaled to the norm of the current forget gradient:
    first-epoch gradients were taken near initialisation, where the loss and its gradients are far
    larger than at the end of training, so a step along them is many times a step along the current
    gradient and a single one overshoots the calibrated stop. The recorded gradient says which way;
    the current one how far a step goes (the same learning rate then suits both sources)."""
    if recorded:
        task.extra_metrics.update(gradient_source="recorded_first_epoch", gradient_source_samples=recorded.samples)
        direction = {name: (recorded.sums[name] / recorded.rows).to(task.device) for name in allowed}
        if task.is_language_model:
            current = _current_direction(task, forget, allowed)
            scale = _norm(current) / max(_norm(direction), 1e-12)
            task.extra_metrics["first_epoch_direction_scale"] = scale
            direction = {name: d * scale for name, d in direction.items()}
        return direction
    task.extra_metrics["gradient_source"] = "current_model_at_start"  # _recorded_gradients said why
    return _current_direction(task, forget, allowed)


def _current_direction(task: UnlearningTask, forget: LabelledTensors, allowed: dict) -> dict[str, torch.Tensor]:
    objective = task.objective
    grads = summed_gradients(
        allowed,
        forget,
        lambda out, y: objective.loss_from_output(out, y, reduction="sum"),
        task.model,
        batch_size=64 if task.is_language_model else 1024,
    )
    task.model.zero_grad(set_to_none=True)
    return {name: g / len(forget) for name, g in grads.items()}


def _documents(task: UnlearningTask, holdout: LabelledTensors | None, ids: list[str]) -> LabelledTensors:
    if not task.is_language_model:
        raise MethodNotApplicable("calibration_documents name held-out documents of a language model")
    wanted = set(ids)
    rows = [i for i, d in enumerate(holdout.ids or []) if d in wanted] if holdout is not None else []
    if not rows:
        raise MethodNotApplicable("none of calibration_documents is a held-out document of the model's dataset")
    return holdout.subset(torch.tensor(rows))


def _norm(tensors: dict[str, torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.float() ** 2).sum() for t in tensors.values())))


def _stopping_rule(task: UnlearningTask, params: GradientAscentParams, forget: LabelledTensors):
    if params.stop != "calibrated":
        return None
    probe = _seeded_subset(forget, params.probe_samples, params.seed)  # checks run often: a fixed subset
    if task.scope == "class_labels":
        task.extra_metrics["calibration"] = {
            "forget_accuracy_target": params.target_forget_accuracy,
            "probe_samples": len(probe),
        }
        return lambda: accuracy(task.model, probe) <= params.target_forget_accuracy
    unseen = task.holdout_like_forget()
    if params.calibration_documents is not None:
        unseen = _documents(task, unseen, params.calibration_documents)
    if unseen is None:
        task.extra_metrics["calibration"] = {"note": "no held-out data of these classes: ran to max_epochs"}
        return None
    recalibrate = task.is_language_model if params.recalibrate is None else params.recalibrate
    if recalibrate:  # measured again and again: a fixed seeded subset bounds each measurement's cost
        unseen = _seeded_subset(unseen, params.calibration_samples, params.seed)
    target = mean_loss(task.model, unseen, task.objective)
    calibration = task.extra_metrics["calibration"] = {
        "forget_loss_target": target,
        "holdout_samples": len(unseen),
        "probe_samples": len(probe),
        "recalibrate": recalibrate,
    }
    if not recalibrate:
        return lambda: mean_loss(task.model, probe, task.objective) >= target
    calibration["recalibrate_every"] = params.recalibrate_every
    measured_at = task.progress.step

    def reached() -> bool:
        nonlocal measured_at
        if task.progress.step - measured_at >= params.recalibrate_every:
            calibration["forget_loss_target"] = mean_loss(task.model, unseen, task.objective)
            measured_at = task.progress.step
        return mean_loss(task.model, probe, task.objective) >= calibration["forget_loss_target"]

    return reached


def _seeded_subset(data: LabelledTensors, n: int, seed: int) -> LabelledTensors:
    """A fixed random ``n`` rows of ``data`` (all of it when it holds no more)."""
    if len(data) <= n:
        return data
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(rows[:n])
