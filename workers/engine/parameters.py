"""Which parameters a method may change, and by how much: layer restriction and layer-wise partial
updates (only the top-p entries of each tensor, the rest kept bit-identical)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from workers.engine.tensors import LabelledTensors


class ParameterSelectionError(ValueError):
    pass


def select_parameters(model: nn.Module, layers: list[str] | None = None) -> dict[str, nn.Parameter]:
    """Trainable parameters whose name starts with one of ``layers`` (every one if None).

    Names are the model's own (``conv1.weight``, ``fc2.bias``, ``layer4.1.conv2.weight``); a prefix
    like ``fc2`` selects a whole layer.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if layers is None:
        return params
    chosen = {n: p for n, p in params.items() if any(n == pre or n.startswith(pre + ".") for pre in layers)}
    if not chosen:
        known = sorted({n.rsplit(".", 1)[0] for n in params})
        raise ParameterSelectionError(f"no parameter matches layers {layers}; the model's layers are {known}")
    return chosen


def top_p_masks(scores: dict[str, torch.Tensor], top_p: float) -> dict[str, torch.Tensor]:
    """Per tensor (not globally), mark the ceil(p * n) entries with the largest score."""
    masks = {}
    for name, score in scores.items():
        flat = score.detach().abs().flatten()
        k = max(1, math.ceil(top_p * flat.numel()))
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[torch.topk(flat, k, sorted=False).indices] = True
        masks[name] = mask.view_as(score)
    return masks


def summed_gradients(
    params: dict[str, nn.Parameter],
    data: LabelledTensors,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    forward: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
) -> dict[str, torch.Tensor]:
    """Gradient of ``sum over batches of loss_fn(forward(x), y)`` for each selected parameter."""
    for p in params.values():
        p.grad = None
    for x, y in data.batches(batch_size):
        loss_fn(forward(x), y).backward()
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
    for p in params.values():
        p.grad = None
    return grads


class EntryGuard:
    """Keeps every parameter entry a method may not touch exactly as it was.

    ``allowed`` are the parameters the method may change; ``masks`` (optional) narrows each to the
    marked entries. Gradients outside are zeroed before the step (so optimiser state stays clean),
    and after the step the entries are copied back from the original, so they stay bit-identical
    even under weight decay or momentum.
    """

    def __init__(self, model: nn.Module, allowed: dict[str, nn.Parameter], masks: dict[str, torch.Tensor] | None):
        self.allowed = allowed
        self.masks = masks or {}
        self.frozen = {n: p for n, p in model.named_parameters() if p.requires_grad and n not in allowed}
        self.original = {n: p.detach().clone() for n, p in allowed.items() if n in self.masks}
        for p in self.frozen.values():
            p.requires_grad_(False)

    def mask_gradients(self) -> None:
        for name, mask in self.masks.items():
            grad = self.allowed[name].grad
            if grad is not None:
                grad.mul_(mask)

    @torch.no_grad()
    def restore(self) -> None:
        for name, mask in self.masks.items():
            p = self.allowed[name]
            p.copy_(torch.where(mask, p, self.original[name]))

    def release(self) -> None:
        for p in self.frozen.values():
            p.requires_grad_(True)

    def changed_fraction(self) -> dict[str, float]:
        """Share of each masked tensor's entries that may change (what the method reports)."""
        return {n: m.float().mean().item() for n, m in self.masks.items()}


@contextmanager
def frozen_norm_statistics(model: nn.Module) -> Iterator[None]:
    """Batch-norm layers in eval mode: unlearning batches must not rewrite the running statistics
    (a forget batch or noise would poison them, and partial methods promise untouched entries)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in norms]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(norms, modes, strict=True):
            m.train(mode)


def parameter_vector(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])
