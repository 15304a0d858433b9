"""Evaluation under inference mode, batch by batch."""

from __future__ import annotations

import torch
from torch import nn

from workers.engine.tensors import LabelledTensors

# Activations of 512 MNIST/CIFAR images stay in CPU cache: twice as fast as 4096 for the small CNN on
# 2 cores (0.34 s against 0.74 s for 10,000 images), and plenty for a GPU at these model sizes.
EVAL_BATCH = 512


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
