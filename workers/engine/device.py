from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# cuBLAS reproducibility (docs/decisions/cuda-engine.md): torch reads it once, at the process's first
# cuBLAS call, so it is set before any model is built
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU: the same code path runs on both."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def setup_device(preference: str = "auto", *, deterministic: bool = True) -> torch.device:
    """The device a run uses, configured for it. On CUDA, deterministic: the same bits for the same
    inputs (deterministic kernels, no cuDNN autotuning, no TF32); otherwise cuDNN picks the fastest
    convolution algorithms and float32 matmuls may use TF32 tensor cores. The CPU needs nothing."""
    device = pick_device(preference)
    if device.type == "cuda":
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        # warn_only: an operation without a deterministic kernel warns (naming it) instead of failing the job
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic
        torch.set_float32_matmul_precision("highest" if deterministic else "high")  # "high": TF32
        torch.backends.cudnn.allow_tf32 = not deterministic  # convolutions' TF32 (fp32 when deterministic)
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer read next covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_host(t: torch.Tensor) -> torch.Tensor:
    """A host copy of ``t`` that does not make the caller wait: pinned and non-blocking from CUDA
    (read it only after :func:`synchronize`); ``t`` itself when it is in host memory already."""
    if t.device.type != "cuda":
        return t
    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return out.copy_(t, non_blocking=True)


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
def plain_image_inputs(model: nn.Module) -> Iterator[nn.Module]:
    """Inputs reshaped in the default layout while the context lasts: vmap cannot batch a copy to
    channels-last (torch: "NYI: Tensor.clone(memory_format) inside vmap"), which sent per-sample
    gradients of 3-channel images to the one-backward-per-sample loop."""
    from workers.engine.architectures.modules import ToImage

    inputs = [m for m in model.modules() if isinstance(m, ToImage)]
    saved = [m.memory_format for m in inputs]
    for m in inputs:
        m.memory_format = torch.contiguous_format
    try:
        yield model
    finally:
        for m, memory_format in zip(inputs, saved, strict=True):
            m.memory_format = memory_format


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
