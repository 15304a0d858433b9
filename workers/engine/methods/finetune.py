"""finetune: keep training the current model on the retain set (catastrophic-forgetting baseline)."""

from __future__ import annotations

from workers.engine.methods.base import UnlearningMethod, UnlearningTask
from workers.engine.methods.catalog import FinetuneParams, FinetuneSpec
from workers.engine.training import seed_everything, steps_per_epoch, train


class Finetune(FinetuneSpec, UnlearningMethod):
    def planned_steps(self, task: UnlearningTask, params: FinetuneParams) -> int:
        return params.epochs * steps_per_epoch(len(task.retain), params.batch_size or task.recipe.batch_size)

    def run(self, task: UnlearningTask, params: FinetuneParams):
        seed_everything(params.seed)
        return train(
            task.model,
            task.retain,
            task.recipe,
            progress=task.progress,
            phase="finetune",
            epochs=params.epochs,
            lr=params.lr,
            batch_size=params.batch_size,
            seed=params.seed,
            objective=task.objective,
            group_by_ids=task.is_language_model,
        )
