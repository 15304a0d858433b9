"""mlp: a fully connected network on flattened inputs (config and layout: catalog.py)."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from workers.engine.architectures.catalog import MLPConfig


def build_mlp(config: MLPConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    layers: dict[str, nn.Module] = {"flatten": nn.Flatten()}
    width = math.prod(input_shape)
    for i, h in enumerate(config.hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, h)
        layers[f"relu{i}"] = nn.ReLU()
        if config.dropout:
            layers[f"dropout{i}"] = nn.Dropout(config.dropout)
        width = h
    layers["out"] = nn.Linear(width, num_classes)
    return nn.Sequential(OrderedDict(layers))
