from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class ArchitectureConfig(BaseModel):
    """Base for every architecture's config: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ArchitectureError(ValueError):
    """The architecture cannot be built for this config / input shape."""


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    config_model: type[ArchitectureConfig]
    # build(config, input_shape, num_classes) -> module
    build: Callable[[ArchitectureConfig, tuple[int, ...], int], nn.Module]
    # "classifier" (trained on .npz array datasets) or "language_model" (JSON Lines text datasets)
    kind: str = "classifier"


def image_shape(input_shape: tuple[int, ...], arch: str) -> tuple[int, int, int]:
    """(H, W) or (C, H, W) -> (C, H, W); anything else cannot feed a conv net."""
    if len(input_shape) == 2:
        return (1, *input_shape)
    if len(input_shape) == 3:
        return tuple(input_shape)  # type: ignore[return-value]
    raise ArchitectureError(
        f"{arch} needs image inputs shaped (H, W) or (C, H, W); this dataset's rows are {input_shape}"
    )


class ToImage(nn.Module):
    """Reshape flat or (H, W) rows to (N, C, H, W), in the memory format the convolutions run fastest
    in (see workers.engine.device.prepare_model)."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = shape
        self.memory_format = torch.contiguous_format

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape).contiguous(memory_format=self.memory_format)
