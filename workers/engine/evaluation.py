"""Evaluation under inference mode, in large batches."""

from __future__ import annotations

import torch
from torch import nn

from workers.engine.tensors import LabelledTensors

EVAL_BATCH = 4096


@torch.inference_mode()
def predictions(model: nn.Module, data: LabelledTensors, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = [model(data.x[i : i + batch_size]).argmax(1) for i in range(0, len(data), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=data.device)


def accuracy(model: nn.Module, data: LabelledTensors | None) -> float | None:
    """Fraction classified correctly; None when there is nothing to measure."""
    if data is None or len(data) == 0:
        return None
    return (predictions(model, data) == data.y).float().mean().item()
