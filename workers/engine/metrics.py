"""Verification metrics: accuracies, membership inference on the forget set, distance to a reference."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from workers.engine.evaluation import EVAL_BATCH, accuracy
from workers.engine.objectives import CLASSIFICATION, Objective
from workers.engine.tensors import LabelledTensors

MIA_MIN_PER_SIDE = 5
GAP_KEYS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_accuracy")


def accuracies(model: nn.Module, sets: dict[str, LabelledTensors | None]) -> dict[str, float | None]:
    """``{"<name>_accuracy": value}`` for each named set (None where the set is empty)."""
    return {f"{name}_accuracy": accuracy(model, data) for name, data in sets.items()}


@torch.inference_mode()
def per_sample_outputs(
    model: nn.Module, data: LabelledTensors, batch_size: int = EVAL_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """(correct?, cross-entropy) per sample, from one forward pass."""
    was_training = model.training
    model.eval()
    correct, losses = [], []
    for x, y in data.batches(batch_size):
        logits = model(x)
        correct.append(logits.argmax(1) == y)
        losses.append(F.cross_entropy(logits, y, reduction="none"))
    model.train(was_training)
    if not correct:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float32)
    return torch.cat(correct).cpu().numpy(), torch.cat(losses).float().cpu().numpy()


LM_LOSS_BATCH = 64  # blocks per forward pass: logits are [batch, context, vocab]


@torch.inference_mode()
def per_sample_losses(
    model: nn.Module, data: LabelledTensors, batch_size: int | None = None, objective: Objective = CLASSIFICATION
) -> np.ndarray:
    """Loss per row: cross-entropy for a classifier; for a language model (``CAUSAL_LM``) each
    block's mean next-token NLL over its real target tokens (``objective.loss(reduction="none")``)."""
    if objective.name == "classification":
        return per_sample_outputs(model, data, batch_size or EVAL_BATCH)[1]
    batch_size = batch_size or LM_LOSS_BATCH
    was_training = model.training
    model.eval()
    losses = [objective.loss(model, x, y, reduction="none") for x, y in data.batches(batch_size)]
    model.train(was_training)
    return torch.cat(losses).float().cpu().numpy() if losses else np.zeros(0, dtype=np.float32)


def verification(
    model: nn.Module,
    sets: dict[str, LabelledTensors | None],
    members: str = "forget",
    non_members: LabelledTensors | None = None,
) -> dict[str, float | int | None]:
    """Every set's accuracy, and membership inference of ``sets[members]`` against ``non_members``,
    from one forward pass per set."""
    out: dict[str, float | int | None] = {}
    losses: dict[str, np.ndarray] = {}
    for name, data in sets.items():
        if data is None or len(data) == 0:
            out[f"{name}_accuracy"] = None
            continue
        correct, losses[name] = per_sample_outputs(model, data)
        out[f"{name}_accuracy"] = float(correct.mean())
    mia = None
    if members in losses and non_members is not None:
        mia = mia_from_losses(losses[members], per_sample_losses(model, non_members))
    out.update(mia or {"mia_accuracy": None, "mia_auc": None})
    return out


def membership_inference(
    model: nn.Module,
    members: LabelledTensors,
    non_members: LabelledTensors | None,
    seed: int = 0,
    splits: int = 10,
    objective: Objective = CLASSIFICATION,
) -> dict[str, float | int] | None:
    """Can an attacker tell the forget set from unseen data by the model's loss on each sample?

    Balanced samples of members (the forget set) and non-members (held-out data of the same
    classes); a logistic regression on the per-sample loss under a 10-fold stratified shuffle split
    (mean accuracy, 0.5 = indistinguishable), and the ROC-AUC of the raw loss (lower loss = member).
    The target is what a retrained model scores, not 0.
    """
    if non_members is None:
        return None
    return mia_from_losses(
        per_sample_losses(model, members, objective=objective),
        per_sample_losses(model, non_members, objective=objective),
        seed,
        splits,
    )


def mia_from_losses(
    member_losses: np.ndarray, other_losses: np.ndarray, seed: int = 0, splits: int = 10
) -> dict[str, float | int] | None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit

    n = min(len(member_losses), len(other_losses))
    if n < MIA_MIN_PER_SIDE:
        return None
    rng = np.random.default_rng(seed)
    member_losses = member_losses[rng.permutation(len(member_losses))[:n]]
    other_losses = other_losses[rng.permutation(len(other_losses))[:n]]
    x = np.concatenate([member_losses, other_losses]).reshape(-1, 1).astype(np.float64)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    x = np.clip(x, 0, 1e6)  # a loss can be huge after ascent; keep the regression well defined
    scores = []
    for train, test in StratifiedShuffleSplit(n_splits=splits, test_size=0.2, random_state=seed).split(x, y):
        scores.append(LogisticRegression().fit(x[train], y[train]).score(x[test], y[test]))
    return {
        "mia_accuracy": float(np.mean(scores)),
        "mia_auc": float(roc_auc_score(y, -x[:, 0])),
        "mia_samples": int(2 * n),
    }


def mean_loss(model: nn.Module, data: LabelledTensors | None, objective: Objective = CLASSIFICATION) -> float | None:
    """The set's ``objective.loss(reduction="mean")``: mean cross-entropy over rows for a classifier,
    mean NLL over every real target token for a language model (log-perplexity in nats)."""
    if data is None or len(data) == 0:
        return None
    if objective.name == "classification":
        return float(per_sample_losses(model, data).mean())
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for x, y in data.batches(LM_LOSS_BATCH):
            part, n = objective.token_totals(model, x, y)
            total, count = total + float(part), count + n
    model.train(was_training)
    return total / count if count else None


def weight_distance(model: nn.Module, reference: nn.Module) -> float:
    """sqrt(sum ||theta_u - theta_r||^2 / sum ||theta_r||^2) over parameters."""
    num = den = 0.0
    for p, r in zip(model.parameters(), reference.parameters(), strict=True):
        num += (p.detach() - r.detach()).float().pow(2).sum().item()
        den += r.detach().float().pow(2).sum().item()
    return math.sqrt(num / den) if den else 0.0


def gaps(metrics: dict, reference: dict, keys: tuple[str, ...] = GAP_KEYS) -> dict[str, float]:
    """|metric - reference| per key both have, and their mean (Avg Gap)."""
    out = {
        f"{k}_gap": abs(metrics[k] - reference[k])
        for k in keys
        if metrics.get(k) is not None and reference.get(k) is not None
    }
    if out:
        out["avg_gap"] = float(np.mean(list(out.values())))
    return out
