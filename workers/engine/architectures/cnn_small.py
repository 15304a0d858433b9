from __future__ import annotations

from collections import OrderedDict
from typing import Annotated

from pydantic import Field
from torch import nn

from workers.engine.architectures.base import Architecture, ArchitectureConfig, ToImage, image_shape


class CNNSmallConfig(ArchitectureConfig):
    channels: list[Annotated[int, Field(ge=1, le=512)]] = Field(
        default=[16, 32],
        min_length=1,
        max_length=4,
        description="Output channels of each 3x3 conv block (conv, ReLU, 2x2 max-pool); 1-512 each.",
    )
    hidden: int = Field(default=64, ge=1, le=4096, description="Width of the hidden fully connected layer.")


def build_cnn_small(config: CNNSmallConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    c, h, w = image_shape(input_shape, "cnn_small")
    # Named layers (conv1, conv2, ..., fc1, fc2): layer-restricted methods select parameters by these names.
    layers: dict[str, nn.Module] = {"to_image": ToImage((c, h, w))}
    for i, out in enumerate(config.channels, start=1):
        layers[f"conv{i}"] = nn.Conv2d(c, out, kernel_size=3, padding=1)
        layers[f"relu{i}"] = nn.ReLU()
        if min(h, w) >= 2:  # pool while there is something left to pool
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            h, w = h // 2, w // 2
        c = out
    layers.update(
        flatten=nn.Flatten(),
        fc1=nn.Linear(c * h * w, config.hidden),
        relu=nn.ReLU(),
        fc2=nn.Linear(config.hidden, num_classes),
    )
    return nn.Sequential(OrderedDict(layers))


CNN_SMALL = Architecture(
    name="cnn_small",
    description="Small conv net: 3x3 conv + ReLU + max-pool blocks, then two linear layers.",
    config_model=CNNSmallConfig,
    build=build_cnn_small,
)
