"""A step's pruning runs where the parameters live: the same positions and values, and the same
stored bytes, as pruning a host copy of the whole delta (what the recorder did before)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save

from workers.engine.update_log import RecorderConfig, encode_step, packbits, top_p_positions

CONFIGS = [
    RecorderConfig(mode="dense"),
    RecorderConfig(mode="dense", fp16=True),
    RecorderConfig(mode="pruned", top_p=0.01),  # stored as positions
    RecorderConfig(mode="pruned", top_p=0.3, fp16=True),  # stored as a bitmask
    RecorderConfig(mode="pruned", top_p=0.05, top_p_per_layer={"conv": 0.5}),
]


def reference_encode_step(step: int, deltas: dict[str, torch.Tensor], config: RecorderConfig) -> dict:
    """The host-side encoder: the whole delta copied to the CPU, a keep-mask per tensor's top-k."""
    flat = torch.cat([d.flatten() for d in deltas.values()]).to("cpu", torch.float32)
    dtype = torch.float16 if config.fp16 else torch.float32
    if config.mode == "dense":
        return {f"{step}": flat.to(dtype)}
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    offset = 0
    for name, delta in deltas.items():
        n = delta.numel()
        k = max(1, math.ceil(config.top_p_for(name) * n))
        keep[offset + torch.topk(flat[offset : offset + n].abs(), k, sorted=False).indices] = True
        offset += n
    out = {f"{step}/values": flat[keep].to(dtype)}
    if 4 * int(keep.sum()) <= math.ceil(offset / 8):
        out[f"{step}/index"] = keep.nonzero()[:, 0].to(torch.int32)
    else:
        out[f"{step}/mask"] = torch.from_numpy(np.packbits(keep.numpy()))
    return out


def _deltas(seed: int, device: str = "cpu", ties: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    deltas = {
        "conv.weight": torch.randn(16, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(16, generator=g),
        "fc.weight": torch.randn(10, 300, generator=g),
        "fc.bias": torch.randn(10, generator=g),
    }
    if ties:  # rows a step left unchanged: ties at zero, as an embedding's unused rows give
        deltas["fc.weight"][:7] = 0.0
    return {n: d.to(device) for n, d in deltas.items()}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.mode}-{c.top_p}-fp16={c.fp16}")
def test_encoding_matches_the_host_reference_tensor_for_tensor_and_byte_for_byte(config):
    for seed in range(5):
        deltas = _deltas(seed)
        ours, reference = encode_step(3, deltas, config), reference_encode_step(3, deltas, config)
        assert ours.keys() == reference.keys()
        for key in ours:
            assert ours[key].dtype == reference[key].dtype and torch.equal(ours[key], reference[key]), key
        assert save(ours) == save(reference)


def test_top_p_positions_are_each_tensors_largest_entries_in_ascending_order():
    deltas = _deltas(0, ties=False)
    sizes = {n: d.numel() for n, d in deltas.items()}
    flat = torch.cat([d.flatten() for d in deltas.values()])
    index = top_p_positions(flat, sizes, RecorderConfig(mode="pruned", top_p=0.1))
    assert torch.equal(index, index.sort().values)
    offset = 0
    for name, n in sizes.items():
        mine = index[(index >= offset) & (index < offset + n)] - offset
        expected = torch.topk(deltas[name].flatten().abs(), math.ceil(0.1 * n)).indices
        assert set(mine.tolist()) == set(expected.tolist()), name
        offset += n


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1001])
def test_packbits_is_numpys(n):
    bits = torch.rand(n, generator=torch.Generator().manual_seed(n)) > 0.5
    assert torch.equal(packbits(bits), torch.from_numpy(np.packbits(bits.numpy())))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.mode}-{c.top_p}-fp16={c.fp16}")
def test_cuda_encoding_equals_the_cpu_encoding(config):
    for seed in range(5):
        # no ties: which of several equal magnitudes top-k keeps is the kernel's choice, per device
        on_cuda = encode_step(3, _deltas(seed, "cuda", ties=False), config)
        on_cpu = encode_step(3, _deltas(seed, "cpu", ties=False), config)
        assert on_cuda.keys() == on_cpu.keys()
        for key in on_cpu:
            assert on_cuda[key].is_cuda and torch.equal(on_cuda[key].cpu(), on_cpu[key]), key
