"""label_flip (seed paper 000): train on the forget set with each label replaced by a random wrong
class (a fresh draw per sample per epoch), interleaved with retain batches to hold utility. With
``partial``, only the top-p entries per tensor move (ranked by the flipped-label gradient on Df)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from workers.engine.methods.base import UnlearningMethod, UnlearningTask
from workers.engine.methods.catalog import LabelFlipParams, LabelFlipSpec
from workers.engine.methods.common import endless_batches, guard_for, random_wrong_labels
from workers.engine.parameters import frozen_norm_statistics
from workers.engine.recipe import make_optimizer
from workers.engine.tensors import LabelledTensors
from workers.engine.training import Stepper, seed_everything, shuffled_batches, steps_per_epoch


class LabelFlip(LabelFlipSpec, UnlearningMethod):
    def planned_steps(self, task: UnlearningTask, params: LabelFlipParams) -> int:
        bs = params.batch_size or task.recipe.batch_size
        return params.epochs * steps_per_epoch(len(task.forget), bs) * (1 + params.retain_batches)

    def run(self, task: UnlearningTask, params: LabelFlipParams):
        seed_everything(params.seed)
        generator = torch.Generator().manual_seed(params.seed)
        model, bs = task.model, params.batch_size or task.recipe.batch_size
        exclude = task.forget_classes
        flipped = LabelledTensors(
            task.forget.x,
            random_wrong_labels(task.forget.y, task.num_classes, generator, exclude),
            target=task.forget.target,
        )
        guard = guard_for(task, params, flipped, lambda out, y: F.cross_entropy(out, y, reduction="sum"))
        stepper = Stepper(
            list(guard.allowed.values()),
            make_optimizer(list(guard.allowed.values()), task.recipe, params.lr),
            task.progress,
            guard,
        )
        retain = endless_batches(task.retain, bs, generator) if len(task.retain) and params.retain_batches else None
        model.train()
        try:
            with frozen_norm_statistics(model):
                for epoch in range(params.epochs):
                    wrong = random_wrong_labels(task.forget.y, task.num_classes, generator, exclude).to(
                        task.forget.device
                    )
                    for batch, rows in enumerate(shuffled_batches(len(task.forget), bs, generator)):
                        task.progress.check_cancel()
                        x, _ = task.forget.batch(rows)
                        loss = F.cross_entropy(model(x), wrong[rows.to(wrong.device)])
                        stepper.step(loss, phase="flip", epoch=epoch, batch=batch, samples=len(rows))
                        for _ in range(params.retain_batches if retain else 0):
                            task.progress.check_cancel()
                            r = next(retain)
                            stepper.step(
                                F.cross_entropy(model(r.x), r.y),
                                phase="retain",
                                epoch=epoch,
                                batch=batch,
                                samples=len(r),
                            )
                task.progress.settle()
        finally:
            guard.release()
        return model.eval()
