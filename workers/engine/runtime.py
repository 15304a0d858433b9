"""What a running method reports and obeys: per-batch records out, cancellation in.

A step's loss and gradient norm stay on the device where they were computed: :class:`Progress`
holds them as pending records and settles them (one device-to-host transfer for all of them) every
few steps, so a GPU step does not wait for the host. The hooks still see every record, in order,
with float values; the non-finite loss check runs at settle time and names the step it happened in.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import torch

# Pending records are settled after this many steps or this many seconds, whichever comes first
# (the seconds bound keeps progress and cancellation timely when a step is slow). Values computed
# on the CPU settle at once: reading them costs no transfer.
SETTLE_EVERY = 32
SETTLE_AFTER_S = 1.0

Value = float | torch.Tensor | None  # a tensor: a scalar not yet read back from its device


class Cancelled(Exception):
    """Raised between batches once the caller asked to stop."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the result would be garbage, so the run stops."""


@dataclass(frozen=True)
class BatchRecord:
    step: int  # 1-based, across all phases of a run
    phase: str
    epoch: int
    batch: int
    loss: float | None  # None for steps that are not a loss minimisation (subtracting a stored delta)
    grad_norm: float | None
    lr: float | None
    samples_seen: int  # cumulative, across phases
    total_steps: int | None

    def as_dict(self) -> dict:
        return asdict(self)


class Hooks(Protocol):
    def on_batch(self, record: BatchRecord) -> None: ...

    def should_cancel(self) -> bool: ...


class NoHooks:
    def on_batch(self, record: BatchRecord) -> None:
        pass

    def should_cancel(self) -> bool:
        return False


def _on_accelerator(value: Value) -> bool:
    return isinstance(value, torch.Tensor) and value.device.type != "cpu"


class Progress:
    """Counts steps and samples across a run's phases and forwards records to the hooks.

    ``settle_every``: pending records are settled once this many are held (default: at once for
    values on the CPU, every :data:`SETTLE_EVERY` steps for values on an accelerator). Whoever ends
    a run calls :meth:`settle` (``train()`` and every method do), so no record is left pending.
    """

    def __init__(self, hooks: Hooks | None = None, total_steps: int | None = None, settle_every: int | None = None):
        self.hooks = hooks or NoHooks()
        self.total_steps = total_steps
        self.settle_every = settle_every
        self.step = 0
        self.samples_seen = 0
        self._pending: list[tuple[BatchRecord, Value, Value]] = []
        self._settled_at = time.monotonic()

    def check_cancel(self) -> None:
        if self.hooks.should_cancel():
            self.settle()  # the hooks see every step taken before the run stops
            raise Cancelled(f"cancelled after step {self.step}")

    def batch_done(
        self,
        *,
        phase: str,
        epoch: int,
        batch: int,
        loss: Value,
        samples: int,
        grad_norm: Value = None,
        lr: float | None = None,
    ) -> None:
        """Count a step; its record reaches the hooks when settled (``loss`` and ``grad_norm`` may
        be tensors still on their device)."""
        self.step += 1
        self.samples_seen += samples
        record = BatchRecord(self.step, phase, epoch, batch, None, None, lr, self.samples_seen, self.total_steps)
        self._pending.append((record, loss, grad_norm))
        limit = self.settle_every
        if limit is None:
            limit = SETTLE_EVERY if (_on_accelerator(loss) or _on_accelerator(grad_norm)) else 1
        if len(self._pending) >= limit or time.monotonic() - self._settled_at >= SETTLE_AFTER_S:
            self.settle()

    def settle(self) -> None:
        """Read the pending values back in one transfer, check the losses, hand the records over in
        order. Raises :class:`TrainingDiverged` at the first non-finite loss."""
        pending, self._pending = self._pending, []
        self._settled_at = time.monotonic()
        if not pending:
            return
        tensors = [v for _, loss, norm in pending for v in (loss, norm) if isinstance(v, torch.Tensor)]
        if tensors:  # on one device (the run's), so a single stack and copy
            host = iter(torch.stack([t.detach().reshape(()).float().to(tensors[0].device) for t in tensors]).tolist())
        else:
            host = iter(())
        for record, loss, norm in pending:
            loss = next(host) if isinstance(loss, torch.Tensor) else loss
            norm = next(host) if isinstance(norm, torch.Tensor) else norm
            if loss is not None and not math.isfinite(loss):
                raise TrainingDiverged(f"the {record.phase} loss became {loss} at step {record.step}")
            self.hooks.on_batch(
                replace(
                    record,
                    loss=None if loss is None else float(loss),
                    grad_norm=None if norm is None else float(norm),
                )
            )
