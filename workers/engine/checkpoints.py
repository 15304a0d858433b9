"""Checkpoints are safetensors: never pickle.

A tensor that a model holds under several names (tied weights, e.g. GPT-2's ``lm_head.weight`` is
``transformer.wte.weight``) is stored once, under its first name in ``state_dict`` order: safetensors
refuses shared tensors, and the copy would be redundant. Loading fills the other names back in.
"""

from __future__ import annotations

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """State-dict names that are the very same tensor as an earlier name: {alias: kept name}.

    Works on the meta device too (identity of the tensor objects, not of their memory)."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        kept = first.setdefault(id(tensor), name)
        if kept != name:
            aliases[name] = kept
    return aliases


def stored_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as a checkpoint stores it: tied aliases dropped."""
    aliases = tied_aliases(model)
    return {k: v for k, v in model.state_dict().items() if k not in aliases}


def to_bytes(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    state = {k: v.detach().to("cpu").contiguous() for k, v in stored_state(model).items()}
    return save_tensors(state, metadata=metadata)


def load_into(model: nn.Module, data: bytes) -> nn.Module:
    """Load weights into ``model`` (keys and shapes must match exactly), on the model's device.

    A tied alias may be absent from the file (it is filled from the name it is tied to)."""
    device = next(model.parameters()).device
    state = {k: v.to(device) for k, v in load_tensors(data).items()}
    for alias, kept in tied_aliases(model).items():
        if alias not in state and kept in state:
            state[alias] = state[kept]
    model.load_state_dict(state, strict=True)
    return model


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)
