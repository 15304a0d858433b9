"""The architecture registry: built-ins plus the ``unlearnd.architectures`` entry-point group.

A deployment adds an architecture by installing a package that declares, in its pyproject.toml::

    [project.entry-points."unlearnd.architectures"]
    my_net = "my_package.nets:MY_NET"   # an Architecture instance (with ``layout``, the API stays torch-free)

Only names in this registry can be built: an import path never comes from an HTTP request. This
package imports no torch (the API lists, validates and lays out architectures with it); building does.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from workers.engine.architectures.base import Architecture, ArchitectureConfig, ArchitectureError
from workers.engine.architectures.catalog import BUILTIN

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "unlearnd.architectures"


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
    name: see workers.engine.checkpoints): the architecture's ``layout``, or for one without, the
    model built on the meta device (no memory, no init cost, but torch).

    For a language model (gpt2) ``input_shape`` is ``(sequence_length,)`` and ``num_classes`` the
    tokenizer's vocabulary size."""
    arch = get_architecture(name)
    if arch.layout is not None:
        return arch.layout(parse_config(name, config), tuple(input_shape), num_classes)
    import torch

    from workers.engine.checkpoints import stored_state

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
