"""The architecture registry: built-ins plus the ``unlearnd.architectures`` entry-point group.

A deployment adds an architecture by installing a package that declares, in its pyproject.toml::

    [project.entry-points."unlearnd.architectures"]
    my_net = "my_package.nets:MY_NET"   # an Architecture instance

Only names in this registry can be built: an import path never comes from an HTTP request.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from workers.engine.architectures.base import Architecture, ArchitectureConfig, ArchitectureError
from workers.engine.architectures.cnn_small import CNN_SMALL
from workers.engine.architectures.gpt2 import GPT2
from workers.engine.architectures.mlp import MLP
from workers.engine.architectures.resnet18 import RESNET18
from workers.engine.checkpoints import stored_state

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "unlearnd.architectures"
BUILTIN = (MLP, CNN_SMALL, RESNET18, GPT2)


@lru_cache
def registry() -> dict[str, Architecture]:
    found = {a.name: a for a in BUILTIN}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        arch = ep.load()
        if not isinstance(arch, Architecture) or arch.name != ep.name or ep.name in found:
            log.warning("ignoring architecture entry point %s: not a new Architecture named %s", ep.value, ep.name)
            continue
        found[arch.name] = arch
    return found


def get_architecture(name: str) -> Architecture:
    try:
        return registry()[name]
    except KeyError:
        raise ArchitectureError(f"unknown architecture {name!r}; available: {', '.join(sorted(registry()))}") from None


def parse_config(name: str, config: dict[str, Any] | None) -> ArchitectureConfig:
    """Validate an architecture config; raises pydantic.ValidationError with per-field errors."""
    return get_architecture(name).config_model.model_validate(config or {})


def build_model(name: str, config: dict[str, Any] | None, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    arch = get_architecture(name)
    return arch.build(parse_config(name, config), tuple(input_shape), num_classes)


def expected_tensors(
    name: str, config: dict[str, Any] | None, input_shape: tuple[int, ...], num_classes: int
) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes as a checkpoint stores them (a tied weight once, under its first
    name: see workers.engine.checkpoints), built on the meta device (no memory, no init cost).

    For a language model (gpt2) ``input_shape`` is ``(sequence_length,)`` and ``num_classes`` the
    tokenizer's vocabulary size."""
    with torch.device("meta"):
        model = build_model(name, config, input_shape, num_classes)
    return {k: tuple(v.shape) for k, v in stored_state(model).items()}


__all__ = [
    "Architecture",
    "ArchitectureConfig",
    "ArchitectureError",
    "ValidationError",
    "build_model",
    "expected_tensors",
    "get_architecture",
    "parse_config",
    "registry",
]
