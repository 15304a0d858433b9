"""retrain: train from scratch on the retain set with the model's own recipe.

Exact unlearning: the result never saw the forget set. It is the quality target and the cost every
other method is compared with.
"""

from __future__ import annotations

from workers.engine.methods.base import UnlearningMethod, UnlearningTask
from workers.engine.methods.catalog import RetrainParams, RetrainSpec
from workers.engine.training import seed_everything, steps_per_epoch, train


class Retrain(RetrainSpec, UnlearningMethod):
    def planned_steps(self, task: UnlearningTask, params: RetrainParams) -> int:
        return task.recipe.epochs * steps_per_epoch(len(task.retain), task.recipe.batch_size)

    def run(self, task: UnlearningTask, params: RetrainParams):
        seed = task.recipe.seed if params.seed is None else params.seed
        seed_everything(seed)
        model = task.build_model()
        return train(
            model,
            task.retain,
            task.recipe,
            progress=task.progress,
            phase="retrain",
            seed=seed,
            objective=task.objective,
            group_by_ids=task.is_language_model,
        )
