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
    """Predicted classes, on the set's device."""
    was_training = model.training
    model.eval()
    out = [model(x).argmax(1) for x, _ in data.batches(batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=data.device)


@torch.inference_mode()
def accuracy(model: nn.Module, data: LabelledTensors | None, batch_size: int = EVAL_BATCH) -> float | None:
    """Fraction classified correctly (float32, as a mean of the hits); None when there is nothing to
    measure. One read back from the device for the whole set."""
    if data is None or len(data) == 0:
        return None
    was_training = model.training
    model.eval()
    correct = sum((model(x).argmax(1) == y).sum() for x, y in data.batches(batch_size))
    model.train(was_training)
    return (correct.float() / len(data)).item()
