"""Labelled tensors: the unit every training and evaluation loop works on.

A set lives on the device it is used on (resident), unless it is larger than a budget of device
memory: then it stays in host memory (pinned on CUDA) and goes to the device batch by batch
(streamed). Loops read batches through :meth:`LabelledTensors.batch` / :meth:`LabelledTensors.batches`,
one code path for both: for a resident set, and on the CPU, the move is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

# Default budget of a set on a CUDA device: a share of its memory, leaving the rest to the model,
# its activations and the job's other sets.
DEVICE_DATA_SHARE = 0.25


def as_model_input(x: np.ndarray) -> torch.Tensor:
    """uint8 pixels -> [0, 1] floats; other numbers -> float32 unchanged."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.float()


def device_data_budget(device: torch.device) -> int | None:
    """Bytes a set may hold on ``device`` before it is streamed; None: no limit (host memory)."""
    if device.type != "cuda":
        return None
    return int(DEVICE_DATA_SHARE * torch.cuda.get_device_properties(device).total_memory)


def placement(nbytes: int, device: torch.device, budget_bytes: int | None = None) -> Literal["resident", "streamed"]:
    """Resident on ``device``, or streamed from host memory when larger than the budget (default:
    :func:`device_data_budget`). On the CPU host memory is the device: always resident."""
    if device.type == "cpu":
        return "resident"
    budget = device_data_budget(device) if budget_bytes is None else budget_bytes
    return "resident" if budget is None or nbytes <= budget else "streamed"


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; from host memory to CUDA through pinned memory, without blocking."""
    if t.device == device:
        return t
    if t.device.type == "cpu" and device.type == "cuda" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


@dataclass
class LabelledTensors:
    x: torch.Tensor
    y: torch.Tensor
    ids: list[str] | None = None
    target: torch.device | None = None  # streamed: the device batches go to (x and y in host memory)

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        ids=None,
        device: torch.device | str = "cpu",
        budget_bytes: int | None = None,
    ):
        data = cls(as_model_input(x), torch.as_tensor(y, dtype=torch.long), None if ids is None else list(ids))
        return data.placed(device, budget_bytes)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        """Where the set is used: its batches are there."""
        return self.target if self.target is not None else self.x.device

    @property
    def nbytes(self) -> int:
        return self.x.nbytes + self.y.nbytes

    def placed(self, device: torch.device | str, budget_bytes: int | None = None) -> LabelledTensors:
        """This set for use on ``device``: resident there, or streamed if over the budget."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if placement(self.nbytes, device, budget_bytes) == "resident":
            return LabelledTensors(self.x.to(device), self.y.to(device), self.ids)
        x, y = self.x.cpu(), self.y.cpu()
        if device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return LabelledTensors(x, y, self.ids, target=device)

    def to(self, device) -> LabelledTensors:
        """Resident on ``device``, whatever the size."""
        return LabelledTensors(self.x.to(device), self.y.to(device), self.ids)

    def batch(self, rows: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of ``rows`` on :attr:`device`: indexed where the set lives, then moved."""
        if isinstance(rows, torch.Tensor):
            rows = rows.to(self.x.device)
        return to_device(self.x[rows], self.device), to_device(self.y[rows], self.device)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) of consecutive rows, ``batch_size`` at a time, on :attr:`device`."""
        for start in range(0, len(self), batch_size):
            yield self.batch(slice(start, start + batch_size))

    def subset(self, index: torch.Tensor | np.ndarray) -> LabelledTensors:
        """These rows as a set of their own, placed for the same device (a part of a streamed set
        is resident once it fits the default budget)."""
        index = torch.as_tensor(index, dtype=torch.long)
        ids = None if self.ids is None else [self.ids[i] for i in index.tolist()]
        index = index.to(self.x.device)
        part = LabelledTensors(self.x[index], self.y[index], ids)
        return part if self.target is None else part.placed(self.target)
