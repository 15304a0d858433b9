"""Checkpoints are safetensors: never pickle."""

from __future__ import annotations

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn


def to_bytes(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return save_tensors(state, metadata=metadata)


def load_into(model: nn.Module, data: bytes) -> nn.Module:
    """Load weights into ``model`` (keys and shapes must match exactly), on the model's device."""
    device = next(model.parameters()).device
    state = {k: v.to(device) for k, v in load_tensors(data).items()}
    model.load_state_dict(state, strict=True)
    return model


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)
