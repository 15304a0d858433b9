from __future__ import annotations

import pytest
import torch
from torch import nn

from workers.engine.metrics import gaps, membership_inference, weight_distance
from workers.engine.tensors import LabelledTensors


class FixedLoss(nn.Module):
    """Logits [0, x]: the cross-entropy on label 0 is log(1 + e^x), growing with the stored x."""

    def forward(self, x):
        return torch.stack([torch.zeros(len(x)), x[:, 0]], dim=1)


def _set(values):
    x = torch.as_tensor(values, dtype=torch.float32).reshape(-1, 1)
    return LabelledTensors(x, torch.zeros(len(x), dtype=torch.long))


def test_membership_inference_separates_only_what_differs():
    gen = torch.Generator().manual_seed(0)
    low = _set(torch.rand(200, generator=gen) * 0.1)  # members: small loss
    high = _set(2 + torch.rand(200, generator=gen))  # non-members: large loss
    alike = _set(torch.rand(200, generator=gen) * 0.1)
    model = FixedLoss()
    clear = membership_inference(model, low, high)
    assert clear["mia_accuracy"] > 0.95 and clear["mia_auc"] > 0.99 and clear["mia_samples"] == 400
    same = membership_inference(model, low, alike)
    assert 0.3 < same["mia_accuracy"] < 0.7 and 0.35 < same["mia_auc"] < 0.65
    assert membership_inference(model, _set([0.1] * 3), high) is None  # too few to say anything


def test_weight_distance_and_gaps():
    a, b = nn.Linear(4, 2), nn.Linear(4, 2)
    assert weight_distance(a, a) == 0.0
    with torch.no_grad():
        for p, q in zip(b.parameters(), a.parameters(), strict=True):
            p.copy_(q * 2)
    assert abs(weight_distance(b, a) - 1.0) < 1e-6  # ||2a - a|| / ||a||
    g = gaps(
        {"forget_accuracy": 0.1, "test_accuracy": 0.9, "mia_accuracy": None},
        {"forget_accuracy": 0.0, "test_accuracy": 0.95, "mia_accuracy": 0.5},
    )
    assert g == pytest.approx({"forget_accuracy_gap": 0.1, "test_accuracy_gap": 0.05, "avg_gap": 0.075})
