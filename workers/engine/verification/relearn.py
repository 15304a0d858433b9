"""Relearn probe (METHODS.md, "relearn resistance"): does the forget set come back faster than data
the model never saw?

Two throwaway copies of the unlearned model take the same few full-batch fine-tuning steps (the
model's own optimiser at a tenth of its learning rate), one on a sample of the forget set, one on an equal-size
never-seen set (evaluation rows of the same classes; evaluation documents for a language model),
each with the same equal-size sample of retained training rows alongside.
A model that only hid the forget set (e.g. a last layer nudged away from it) relearns it much faster
than new data; one that forgot it relearns it like new data. The statistic is how far ahead the
forget copy is on its own set, averaged over the steps (the relearning curve, since both sets are
learnt by the end of a long enough probe): accuracy for a classifier, relative loss for a language
model (1 - loss_forget / loss_never_seen).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from workers.engine.evaluation import accuracy
from workers.engine.metrics import mean_loss
from workers.engine.objectives import Objective
from workers.engine.parameters import frozen_norm_statistics
from workers.engine.recipe import TrainingRecipe, make_optimizer
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything

MIN_ROWS = 5
# a fixed small learning rate: a tenth of the model's own (at the full rate, with momentum, a few
# full-batch steps on a small set oscillate, and the curves say nothing)
LR_SCALE = 0.1


def matched_rows(pool_labels: np.ndarray, wanted_labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of the pool with the wanted class counts where the pool has them, topped up at random."""
    chosen: list[int] = []
    for c, k in zip(*np.unique(wanted_labels, return_counts=True), strict=True):
        rows = np.flatnonzero(pool_labels == c)
        chosen.extend(rng.choice(rows, min(int(k), len(rows)), replace=False).tolist())
    rest = np.setdiff1d(np.arange(len(pool_labels)), chosen)
    short = min(len(wanted_labels) - len(chosen), len(rest))
    if short > 0:
        chosen.extend(rng.choice(rest, short, replace=False).tolist())
    return np.asarray(sorted(chosen), dtype=np.int64)


def relearning_curve(
    model: nn.Module,
    data: LabelledTensors,
    alongside: LabelledTensors | None,
    recipe: TrainingRecipe,
    objective: Objective,
    steps: int,
    seed: int,
) -> list[float]:
    """The score on ``data`` before and after each of ``steps`` full-batch steps on it (with the
    retained rows ``alongside``: fine-tuning on one class alone would teach "everything is that
    class" and score 100% on any set of it), on a copy of ``model``: accuracy for a classifier, mean
    loss for a language model."""
    batch = (
        data
        if alongside is None
        else LabelledTensors(torch.cat([data.x, alongside.x]), torch.cat([data.y, alongside.y]))
    )
    x, y = batch.batch(slice(None))  # on the device once, for every step
    probe = copy.deepcopy(model)
    seed_everything(seed)
    score = _accuracy if objective.name == "classification" else _loss
    curve = [score(probe, data, objective)]
    params = [p for p in probe.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, recipe, lr=recipe.lr * LR_SCALE)
    for _ in range(steps):
        probe.eval()  # no dropout, batch-norm statistics fixed: the same steps for both copies
        with torch.enable_grad(), frozen_norm_statistics(probe):
            optimizer.zero_grad(set_to_none=True)
            objective.loss(probe, x, y).backward()
            optimizer.step()
        curve.append(score(probe, data, objective))
    return curve


def _accuracy(model: nn.Module, data: LabelledTensors, _objective: Objective) -> float:
    return float(accuracy(model, data))


def _loss(model: nn.Module, data: LabelledTensors, objective: Objective) -> float:
    return float(mean_loss(model, data, objective))


def relearn_probe(
    model: nn.Module,
    forget: LabelledTensors,
    never_seen: LabelledTensors,
    retain: LabelledTensors | None,
    *,
    recipe: TrainingRecipe,
    objective: Objective,
    steps: int,
    rows: int,
    margin: float,
    seed: int = 0,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = min(len(forget), len(never_seen), rows)
    out: dict[str, Any] = {
        "name": "relearn",
        "statistic": None,
        "threshold": margin,
        "passed": False,
        "steps": steps,
        "rows": n,
    }
    classifier = objective.name == "classification"
    out["comparison"] = (
        "accuracy after relearning: forget - never-seen <= threshold"
        if classifier
        else "loss after relearning: 1 - forget / never-seen <= threshold"
    )
    if n < MIN_ROWS:
        out["note"] = f"too few rows to probe: {len(forget)} forget, {len(never_seen)} never-seen (at least {MIN_ROWS})"
        return out
    f_rows = np.sort(rng.permutation(len(forget))[:n])
    f_set = forget.subset(f_rows)
    if classifier:
        n_rows = matched_rows(never_seen.y.cpu().numpy(), f_set.y.cpu().numpy(), rng)
    else:
        n_rows = np.sort(rng.permutation(len(never_seen))[:n])
    n_set = never_seen.subset(n_rows)
    alongside = None
    if retain is not None and len(retain):
        alongside = retain.subset(np.sort(rng.permutation(len(retain))[: min(n, len(retain))]))
    forget_curve = relearning_curve(model, f_set, alongside, recipe, objective, steps, seed)
    never_curve = relearning_curve(model, n_set, alongside, recipe, objective, steps, seed)
    # how much further ahead the forget set is, on average over the steps (both sets saturate at the
    # end of a long enough probe: the speed is in the curve, not its end point)
    if classifier:
        gaps = [f - n for f, n in zip(forget_curve[1:], never_curve[1:], strict=True)]
    else:
        gaps = [1 - f / max(n, 1e-12) for f, n in zip(forget_curve[1:], never_curve[1:], strict=True)]
    statistic = float(np.mean(gaps))
    out.update(
        statistic=round(statistic, 6),
        passed=statistic <= margin,
        forget_curve=[round(v, 4) for v in forget_curve],
        never_seen_curve=[round(v, 4) for v in never_curve],
    )
    return out
