"""What a running method reports and obeys: per-batch records out, cancellation in."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol


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


class Progress:
    """Counts steps and samples across a run's phases and forwards records to the hooks."""

    def __init__(self, hooks: Hooks | None = None, total_steps: int | None = None):
        self.hooks = hooks or NoHooks()
        self.total_steps = total_steps
        self.step = 0
        self.samples_seen = 0

    def check_cancel(self) -> None:
        if self.hooks.should_cancel():
            raise Cancelled(f"cancelled after step {self.step}")

    def batch_done(
        self,
        *,
        phase: str,
        epoch: int,
        batch: int,
        loss: float | None,
        samples: int,
        grad_norm: float | None = None,
        lr: float | None = None,
    ) -> BatchRecord:
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(f"the {phase} loss became {loss} at step {self.step + 1}")
        self.step += 1
        self.samples_seen += samples
        record = BatchRecord(
            self.step,
            phase,
            epoch,
            batch,
            None if loss is None else float(loss),
            None if grad_norm is None else float(grad_norm),
            lr,
            self.samples_seen,
            self.total_steps,
        )
        self.hooks.on_batch(record)
        return record
