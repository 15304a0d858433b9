"""The training loop every method builds on (train job, retrain, finetune, repair phases), and the
single optimiser step they all share."""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from workers.engine.parameters import EntryGuard
from workers.engine.recipe import TrainingRecipe, make_optimizer
from workers.engine.runtime import BatchRecord, Progress, TrainingDiverged
from workers.engine.tensors import LabelledTensors


class StepObserver(Protocol):
    """Sees every optimiser step of :func:`train` (the update recorder implements this)."""

    def before_step(self, model: nn.Module, epoch: int, batch: int, rows: torch.Tensor) -> None: ...

    def after_step(self, model: nn.Module, epoch: int, batch: int, rows: torch.Tensor) -> None: ...


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size) if n else 0


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


class Stepper:
    """zero_grad -> backward -> (mask) -> step -> (restore) -> record, for one optimiser.

    ``objective`` is what is minimised; ``reported`` (default: the objective) is the loss written to
    the per-batch log, e.g. the forget-set cross-entropy while ascending it.
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        progress: Progress,
        guard: EntryGuard | None = None,
    ):
        self.params = params
        self.optimizer = optimizer
        self.progress = progress
        self.guard = guard

    def step(
        self,
        objective: torch.Tensor,
        *,
        phase: str,
        epoch: int,
        batch: int,
        samples: int,
        reported: torch.Tensor | None = None,
    ) -> BatchRecord:
        value = (objective if reported is None else reported).item()
        if not math.isfinite(objective.item()) or not math.isfinite(value):
            raise TrainingDiverged(f"the {phase} loss became {value} at step {self.progress.step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.guard:
            self.guard.mask_gradients()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, float("inf"))
        self.optimizer.step()
        if self.guard:
            self.guard.restore()
        return self.progress.batch_done(
            phase=phase,
            epoch=epoch,
            batch=batch,
            loss=value,
            samples=samples,
            grad_norm=grad_norm.item(),
            lr=self.optimizer.param_groups[0]["lr"],
        )


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator):
    """Row indices of one epoch's batches, in a seeded order (CPU generator: same on every device)."""
    order = torch.randperm(n, generator=generator)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def train(
    model: nn.Module,
    data: LabelledTensors,
    recipe: TrainingRecipe,
    *,
    progress: Progress,
    phase: str = "train",
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    observer: StepObserver | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> nn.Module:
    """Minimise cross-entropy on ``data``; overrides default to the recipe's values.

    Shuffling uses its own seeded generator, so the batch order is a function of the seed alone.
    """
    epochs = recipe.epochs if epochs is None else epochs
    batch_size = recipe.batch_size if batch_size is None else batch_size
    seed = recipe.seed if seed is None else seed
    if len(data) == 0:
        return model
    params = [p for p in model.parameters() if p.requires_grad]
    stepper = Stepper(params, optimizer or make_optimizer(params, recipe, lr), progress)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        for batch, rows in enumerate(shuffled_batches(len(data), batch_size, generator)):
            progress.check_cancel()
            device_rows = rows.to(data.device)
            if observer:
                observer.before_step(model, epoch, batch, rows)
            loss = F.cross_entropy(model(data.x[device_rows]), data.y[device_rows])
            stepper.step(loss, phase=phase, epoch=epoch, batch=batch, samples=len(rows))
            if observer:
                observer.after_step(model, epoch, batch, rows)
    model.eval()
    return model
