"""salun (Fan et al., ICLR 2024, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency"): random labelling restricted to the salient weights.

1. Saliency mask, once, before any update: the gradient of the forget-set cross-entropy (model in
   eval mode), summed over Df; the top ``threshold`` fraction of all parameter entries by |gradient|,
   ranked globally over every parameter as the public code does, may change; the rest stay
   bit-identical (:class:`EntryGuard`), and so do batch-norm statistics.
2. Random labelling: each pass shuffles Df, relabelled with random wrong classes (class scope: never
   a forgotten class; drawn once, as in the public code), together with ``retain_ratio`` x |Df| fresh
   retain rows on their true labels, and trains on the mixed batches (SGD, momentum 0.9, wd 5e-4).

The public code mixes Df with the whole of Dr for 10 epochs at a constant learning rate, a cost close
to retraining; here the retain rows per pass are bounded and the learning rate decays linearly to 0,
which holds utility with far fewer steps (docs/decisions/salun.md).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from workers.engine.methods.base import UnlearningMethod, UnlearningTask
from workers.engine.methods.catalog import SalunParams, SalunSpec
from workers.engine.methods.common import random_wrong_labels
from workers.engine.parameters import EntryGuard, frozen_norm_statistics, select_parameters, summed_gradients
from workers.engine.training import Stepper, seed_everything, shuffled_batches, steps_per_epoch

# SalUn's optimizer (public code): SGD, momentum 0.9, weight decay 5e-4; the default learning rates
# per scope are measured on digits (docs/decisions/salun.md); the paper's is 0.013.
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4
DEFAULT_LR = {"class_labels": 0.02, "sample_ids": 0.01}


class Salun(SalunSpec, UnlearningMethod):
    def planned_steps(self, task: UnlearningTask, params: SalunParams) -> int:
        rows = len(task.forget) + _retain_rows_per_pass(task, params)
        return params.epochs * steps_per_epoch(rows, params.batch_size or task.recipe.batch_size)

    def run(self, task: UnlearningTask, params: SalunParams):
        seed_everything(params.seed)
        generator = torch.Generator().manual_seed(params.seed)
        model, forget, retain = task.model, task.forget, task.retain
        bs = params.batch_size or task.recipe.batch_size
        guard = _saliency_guard(task, params.threshold)
        allowed = list(guard.allowed.values())
        lr = params.lr if params.lr is not None else DEFAULT_LR[task.scope]
        optimizer = torch.optim.SGD(allowed, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        total = max(1, self.planned_steps(task, params))
        decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
        stepper = Stepper(allowed, optimizer, task.progress, guard)
        labels = random_wrong_labels(forget.y, task.num_classes, generator, task.forget_classes).to(forget.device)
        n_forget, n_retain = len(forget), _retain_rows_per_pass(task, params)
        model.train()
        try:
            with frozen_norm_statistics(model):
                for epoch in range(params.epochs):
                    picked = torch.randperm(len(retain), generator=generator)[:n_retain]
                    for batch, rows in enumerate(shuffled_batches(n_forget + n_retain, bs, generator)):
                        task.progress.check_cancel()
                        f = rows[rows < n_forget]
                        (fx, _), (rx, ry) = forget.batch(f), retain.batch(picked[rows[rows >= n_forget] - n_forget])
                        x, y = torch.cat([fx, rx]), torch.cat([labels[f.to(labels.device)], ry])
                        stepper.step(
                            F.cross_entropy(model(x), y),
                            phase="random_labels",
                            epoch=epoch,
                            batch=batch,
                            samples=len(rows),
                        )
                        decay.step()
                task.progress.settle()
        finally:
            guard.release()
        task.extra_metrics["salun_retain_rows_per_pass"] = n_retain
        return model.eval()


def _retain_rows_per_pass(task: UnlearningTask, params: SalunParams) -> int:
    return min(len(task.retain), math.ceil(params.retain_ratio * len(task.forget)))


def _saliency_guard(task: UnlearningTask, threshold: float) -> EntryGuard:
    """The entries that may change: the global top ``threshold`` fraction by |forget-loss gradient|."""
    model = task.model
    allowed = select_parameters(model)
    was_training = model.training
    model.eval()
    grads = summed_gradients(allowed, task.forget, lambda out, y: F.cross_entropy(out, y, reduction="sum"), model)
    model.train(was_training)
    masks = global_top_fraction_masks(grads, threshold)
    total = sum(m.numel() for m in masks.values())
    task.extra_metrics["salun_mask_fraction"] = round(sum(int(m.sum()) for m in masks.values()) / max(1, total), 6)
    return EntryGuard(model, allowed, masks)


def global_top_fraction_masks(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Mark the ceil(fraction * n) entries with the largest |score| among all tensors together (n: all
    entries), so a tensor whose gradients are small may keep every entry fixed."""
    flat = torch.cat([s.detach().abs().flatten() for s in scores.values()])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, max(1, math.ceil(fraction * flat.numel())), sorted=False).indices] = True
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = keep[start : start + score.numel()].view_as(score)
        start += score.numel()
    return masks
