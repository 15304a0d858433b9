"""Pieces several methods share: the optional layer-wise partial mask, an endless retain-batch stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from workers.engine.methods.base import UnlearningTask
from workers.engine.methods.catalog import PartialParams
from workers.engine.parameters import EntryGuard, select_parameters, summed_gradients, top_p_masks
from workers.engine.tensors import LabelledTensors
from workers.engine.training import shuffled_batches


def guard_for(
    task: UnlearningTask,
    params: PartialParams,
    objective_data: LabelledTensors,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> EntryGuard:
    """The parameters the method may touch (layer restriction), narrowed by top-p masks if partial.

    The masks rank entries by |gradient| of ``objective`` (the forget objective) summed over
    ``objective_data``, computed once before any update.
    """
    allowed = select_parameters(task.model, params.layers)
    masks = None
    if params.partial:
        grads = summed_gradients(allowed, objective_data, objective, task.model)
        task.model.zero_grad(set_to_none=True)
        masks = top_p_masks(grads, params.top_p)
    guard = EntryGuard(task.model, allowed, masks)
    if masks:
        task.extra_metrics["partial_fraction_per_tensor"] = {
            n: round(f, 6) for n, f in guard.changed_fraction().items()
        }
    return guard


def endless_batches(data: LabelledTensors, batch_size: int, generator: torch.Generator) -> Iterator[LabelledTensors]:
    """Shuffled batches of ``data`` (on its device, without IDs), epoch after epoch, for interleaving
    with forget batches."""
    while True:
        for rows in shuffled_batches(len(data), batch_size, generator):
            yield LabelledTensors(*data.batch(rows))


def random_wrong_labels(
    y: torch.Tensor, num_classes: int, generator: torch.Generator, exclude: tuple[int, ...] = ()
) -> torch.Tensor:
    """For each label, a uniformly drawn different class (never one of ``exclude``)."""
    allowed = torch.ones(len(y), num_classes, dtype=torch.bool)
    allowed[torch.arange(len(y)), y.cpu()] = False
    if exclude:
        allowed[:, list(exclude)] = False
    weights = allowed.float()
    return torch.multinomial(weights, 1, generator=generator)[:, 0].to(y.device)


def penultimate_features(model: nn.Module, data: LabelledTensors) -> torch.Tensor:
    """The input of the model's last linear layer (its embedding of each row of ``data``)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    try:
        with torch.inference_mode():
            for x, _ in data.batches(4096):
                model(x)
    finally:
        handle.remove()
    return torch.cat(captured)
