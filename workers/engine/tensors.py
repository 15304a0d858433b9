"""Labelled tensors held on the device: the unit every training and evaluation loop works on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def as_model_input(x: np.ndarray) -> torch.Tensor:
    """uint8 pixels -> [0, 1] floats; other numbers -> float32 unchanged."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.float()


@dataclass
class LabelledTensors:
    x: torch.Tensor
    y: torch.Tensor
    ids: list[str] | None = None

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray, ids=None, device: torch.device | str = "cpu"):
        return cls(
            as_model_input(x).to(device),
            torch.as_tensor(y, dtype=torch.long).to(device),
            None if ids is None else list(ids),
        )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device) -> LabelledTensors:
        return LabelledTensors(self.x.to(device), self.y.to(device), self.ids)

    def subset(self, index: torch.Tensor | np.ndarray) -> LabelledTensors:
        index = torch.as_tensor(index, dtype=torch.long)
        ids = None if self.ids is None else [self.ids[i] for i in index.tolist()]
        index = index.to(self.x.device)
        return LabelledTensors(self.x[index], self.y[index], ids)
