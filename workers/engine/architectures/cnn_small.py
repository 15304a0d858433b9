"""cnn_small: 3x3 conv + ReLU + max-pool blocks, then two linear layers (config and layout: catalog.py)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from workers.engine.architectures.base import image_shape
from workers.engine.architectures.catalog import CNNSmallConfig
from workers.engine.architectures.modules import ToImage


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
