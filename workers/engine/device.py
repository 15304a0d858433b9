from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU: the same code path runs on both."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory on CUDA; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _set_layout(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    from workers.engine.architectures.modules import ToImage

    model = model.to(memory_format=memory_format)
    for m in model.modules():
        if isinstance(m, ToImage):
            m.memory_format = memory_format
    return model


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device``; conv nets go channels-last (NHWC), which runs their convolutions faster
    on CPUs (oneDNN) and on CUDA tensor cores. Numerics stay deterministic for a given device."""
    model = model.to(device)
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = _set_layout(model, torch.channels_last)
    return model


@contextmanager
def standard_layout(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate in the default memory layout: the one a user gets when loading the checkpoint, so
    the reported metrics are exactly what they reproduce (layouts differ in the last float bits)."""
    channels_last = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        _set_layout(model, torch.contiguous_format)
    try:
        yield model
    finally:
        if channels_last:
            _set_layout(model, torch.channels_last)
