"""Subtracting recorded steps from a model (amnesiac and partial amnesiac unlearning)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from workers.engine.parameters import select_parameters
from workers.engine.runtime import Progress
from workers.engine.update_log import UpdateLogReader


def _prune_dense(values: torch.Tensor, sizes: list[int], top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the top-p entries by magnitude of each tensor of a dense step (prune on read)."""
    keep, offset = [], 0
    for n in sizes:
        k = max(1, math.ceil(top_p * n))
        keep.append(torch.topk(values[offset : offset + n].abs(), k, sorted=False).indices + offset)
        offset += n
    index = torch.cat(keep)
    return index, values[index]


@torch.no_grad()
def subtract_steps(
    model: nn.Module, log: UpdateLogReader, steps: Sequence[int], progress: Progress, prune_top_p: float | None = None
) -> int:
    """theta -= the sum of the stored deltas of ``steps``. One per-batch record per step; returns the
    number of stored entries subtracted.

    The deltas are summed into one flat buffer first and applied once at the end, so a cancelled
    run leaves the model exactly as it was.
    """
    params = select_parameters(model)
    if list(params) != list(log.param_shapes):
        raise ValueError("the update log was recorded for other parameters than this model has")
    sizes = [p.numel() for p in params.values()]
    total = torch.zeros(sum(sizes), dtype=torch.float32)
    step_sizes = {s: info.size for s, info in log.step_info(steps).items()}
    entries = 0
    for i, (step, index, values) in enumerate(log.deltas(steps)):
        progress.check_cancel()
        if index is None and prune_top_p is not None:
            index, values = _prune_dense(values, sizes, prune_top_p)
        if index is None:
            total += values
        else:
            total.index_add_(0, index, values)
        entries += values.numel()
        progress.batch_done(phase="subtract", epoch=0, batch=i, loss=None, samples=step_sizes[step])
    progress.settle()
    for p, part in zip(params.values(), total.split(sizes), strict=True):
        p.sub_(part.view_as(p).to(p.device, p.dtype))
    return entries
