"""What an architecture is (torch-free: the API lists, validates and lays them out without torch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from torch import nn

# (config, input_shape, num_classes) -> {state-dict name: shape}, as a checkpoint stores it
Layout = Callable[["ArchitectureConfig", tuple[int, ...], int], dict[str, tuple[int, ...]]]


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
    # the checkpoint's tensors without building the model (so without torch); None: built on the meta device
    layout: Layout | None = None


def image_shape(input_shape: tuple[int, ...], arch: str) -> tuple[int, int, int]:
    """(H, W) or (C, H, W) -> (C, H, W); anything else cannot feed a conv net."""
    if len(input_shape) == 2:
        return (1, *input_shape)
    if len(input_shape) == 3:
        return tuple(input_shape)  # type: ignore[return-value]
    raise ArchitectureError(
        f"{arch} needs image inputs shaped (H, W) or (C, H, W); this dataset's rows are {input_shape}"
    )
