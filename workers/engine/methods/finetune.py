"""finetune: keep training the current model on the retain set (catastrophic-forgetting baseline)."""

from __future__ import annotations

from pydantic import Field

from workers.engine.methods.base import MethodParams, UnlearningMethod, UnlearningTask
from workers.engine.training import seed_everything, steps_per_epoch, train


class FinetuneParams(MethodParams):
    epochs: int = Field(2, ge=1, le=100, description="Passes over the retain set.")
    lr: float | None = Field(None, gt=0, le=10, description="Learning rate (default: the recipe's).")
    batch_size: int | None = Field(None, ge=1, le=65536, description="Batch size (default: the recipe's).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the batch order.")


class Finetune(UnlearningMethod):
    name = "finetune"
    summary = "Continue training on the retain set for a few epochs (baseline)."
    Params = FinetuneParams

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
