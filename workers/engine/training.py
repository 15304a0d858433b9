"""The training loop every method builds on (train job, retrain, finetune, repair phases), and the
single optimiser step they all share."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

from workers.engine.objectives import CLASSIFICATION, Objective
from workers.engine.parameters import EntryGuard
from workers.engine.recipe import TrainingRecipe, autocast, make_optimizer
from workers.engine.runtime import Progress
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
    ) -> None:
        """One optimiser step; the loss and gradient norm stay on the device until ``progress``
        settles them (no host sync here)."""
        loss = objective.detach()
        if reported is not None:  # a non-finite objective is reported, so that the check at settle sees it
            loss = torch.where(torch.isfinite(loss), reported.detach(), loss)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.guard:
            self.guard.mask_gradients()
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        self.optimizer.step()
        if self.guard:
            self.guard.restore()
        self.progress.batch_done(
            phase=phase,
            epoch=epoch,
            batch=batch,
            loss=loss,
            samples=samples,
            grad_norm=grad_norm,
            lr=self.optimizer.param_groups[0]["lr"],
        )


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator):
    """Row indices of one epoch's batches, in a seeded order (CPU generator: same on every device)."""
    order = torch.randperm(n, generator=generator)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def document_rows(ids: Sequence[str]) -> list[torch.Tensor]:
    """Row indices of each document (rows sharing an ID), ascending, documents in first-seen order."""
    groups: dict[str, list[int]] = {}
    for row, sid in enumerate(ids):
        groups.setdefault(sid, []).append(row)
    return [torch.tensor(rows, dtype=torch.long) for rows in groups.values()]


def document_batches(
    ids: Sequence[str] | list[torch.Tensor], batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """One epoch's batches with each document's rows kept together (language models: a row is a
    block, ``ids[row]`` its document's ID), so that a document is seen in as few steps as possible.

    Documents are taken in a seeded random order (CPU generator: same on every device); a batch
    collects whole documents until it holds at least ``batch_size`` rows (so it may hold up to
    ``2 * batch_size - 1``). A document of more than ``batch_size`` rows closes the open batch and
    spans ``ceil(rows / batch_size)`` consecutive batches, its last part opening the next one. Every
    row appears exactly once per epoch. ``ids`` may also be ``document_rows(ids)``, computed once.
    """
    groups = ids if len(ids) and isinstance(ids[0], torch.Tensor) else document_rows(ids)  # type: ignore[arg-type]
    batches: list[torch.Tensor] = []
    current: list[torch.Tensor] = []
    held = 0
    for d in torch.randperm(len(groups), generator=generator).tolist():
        rows = groups[d]
        if len(rows) > batch_size:
            if current:
                batches.append(torch.cat(current))
            full = (len(rows) - 1) // batch_size * batch_size
            batches += list(rows[:full].split(batch_size))
            current, held = [rows[full:]], len(rows) - full
        else:
            current.append(rows)
            held += len(rows)
        if held >= batch_size:
            batches.append(torch.cat(current))
            current, held = [], 0
    if current:
        batches.append(torch.cat(current))
    return batches


def steps_per_epoch_of(ids: Sequence[str], batch_size: int, group_by_ids: bool) -> dict[str, int]:
    """How many steps of one training epoch hold each ID, as :func:`train` batches them: a row is in
    exactly one batch per epoch (the last, partial batch included), so an ID of one row is in one
    step; a grouped document of ``n`` rows is in ``ceil(n / batch_size)`` (:func:`document_batches`)."""
    if not group_by_ids:
        return dict.fromkeys(ids, 1)
    return {sid: math.ceil(n / batch_size) for sid, n in Counter(ids).items()}


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
    objective: Objective = CLASSIFICATION,
    group_by_ids: bool = False,
) -> nn.Module:
    """Minimise ``objective`` (cross-entropy for classifiers, next-token NLL for language models) on
    ``data``; overrides default to the recipe's values.

    Shuffling uses its own seeded generator, so the batch order is a function of the seed alone.
    ``recipe.precision`` "bf16" runs the forward pass and loss under bfloat16 autocast; the weights
    and the optimiser stay float32.
    ``group_by_ids`` (language models, ``data.ids`` holding each block's document ID) batches whole
    documents (:func:`document_batches`) instead of independently shuffled rows.
    """
    epochs = recipe.epochs if epochs is None else epochs
    batch_size = recipe.batch_size if batch_size is None else batch_size
    seed = recipe.seed if seed is None else seed
    if len(data) == 0:
        progress.settle()
        return model
    params = [p for p in model.parameters() if p.requires_grad]
    stepper = Stepper(params, optimizer or make_optimizer(params, recipe, lr), progress)
    generator = torch.Generator().manual_seed(seed)
    if group_by_ids:
        if data.ids is None:
            raise ValueError("group_by_ids needs data.ids (each row's document ID)")
        groups = document_rows(data.ids)
    base_lrs = [group["lr"] for group in stepper.optimizer.param_groups]
    model.train()
    for epoch in range(epochs):
        if group_by_ids:
            batches = document_batches(groups, batch_size, generator)
        else:
            batches = shuffled_batches(len(data), batch_size, generator)
        batches = list(batches)
        for batch, rows in enumerate(batches):
            progress.check_cancel()
            x, y = data.batch(rows)  # a streamed set's rows start moving to the device now
            if observer:
                observer.before_step(model, epoch, batch, rows)
            if recipe.lr_schedule == "linear_decay":
                _decay(stepper.optimizer, base_lrs, (epoch + batch / len(batches)) / epochs)
            with autocast(recipe, data.device):
                loss = objective.loss(model, x, y)
            stepper.step(loss, phase=phase, epoch=epoch, batch=batch, samples=len(rows))
            if observer:
                observer.after_step(model, epoch, batch, rows)
    progress.settle()
    model.eval()
    return model


def _decay(optimizer: torch.optim.Optimizer, base_lrs: list[float], done: float) -> None:
    """Linear decay: each group's learning rate at ``1 - done`` of its starting value."""
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * (1.0 - done)
