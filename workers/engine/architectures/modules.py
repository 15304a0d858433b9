"""torch modules several architectures share."""

from __future__ import annotations

import torch
from torch import nn


class ToImage(nn.Module):
    """Reshape flat or (H, W) rows to (N, C, H, W), in the memory format the convolutions run fastest
    in (see workers.engine.device.prepare_model)."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = shape
        self.memory_format = torch.contiguous_format

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape).contiguous(memory_format=self.memory_format)
