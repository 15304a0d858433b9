from __future__ import annotations

import math
from collections import OrderedDict
from typing import Annotated

from pydantic import Field
from torch import nn

from workers.engine.architectures.base import Architecture, ArchitectureConfig


class MLPConfig(ArchitectureConfig):
    hidden: list[Annotated[int, Field(ge=1, le=8192)]] = Field(
        default=[128, 64], max_length=8, description="Width of each hidden layer (0-8 layers, 1-8192 each)."
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")


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


MLP = Architecture(
    name="mlp",
    description="Fully connected network on flattened inputs.",
    config_model=MLPConfig,
    build=build_mlp,
)
