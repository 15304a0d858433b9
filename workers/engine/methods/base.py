"""The one interface every unlearning method implements.

A method receives an :class:`UnlearningTask` (the model, the forget set, the retain data, the
recipe, callbacks through ``progress``) and its validated params, and returns the unlearned model.
It reports per-batch records and honours cancellation through ``task.progress``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from workers.engine.recipe import TrainingRecipe
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.update_log import UpdateLogReader

Scope = Literal["sample_ids", "class_labels"]


class MethodParams(BaseModel):
    """Base of every method's params: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class UnlearningTask:
    model: nn.Module  # the version to unlearn from, on ``device``; methods may change it in place
    build_model: Callable[[], nn.Module]  # a freshly initialised model of the same architecture
    recipe: TrainingRecipe  # how the model was trained
    forget: LabelledTensors  # Df
    retain: LabelledTensors  # Dr = training rows minus Df minus earlier erasures
    scope: Scope
    num_classes: int
    device: torch.device
    progress: Progress = field(default_factory=Progress)
    forget_classes: tuple[int, ...] = ()
    holdout: LabelledTensors | None = None  # unseen data (the test split): calibrates stopping
    update_log: UpdateLogReader | None = None  # recorded training updates, for methods that need them
    extra_metrics: dict[str, Any] = field(default_factory=dict)  # what the method wants reported
    consumed_log_steps: list[int] = field(default_factory=list)  # logged steps the method subtracted

    def holdout_like_forget(self) -> LabelledTensors | None:
        """Held-out samples of the forget set's classes: "comparable unseen data"."""
        if self.holdout is None:
            return None
        labels = torch.unique(self.forget.y)
        rows = torch.isin(self.holdout.y, labels).nonzero()[:, 0]
        return self.holdout.subset(rows) if len(rows) else None


class MethodNotApplicable(ValueError):
    """The method cannot serve this scope or model; the message says why and what would."""


class UnlearningMethod(abc.ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    scopes: ClassVar[frozenset[Scope]] = frozenset({"sample_ids", "class_labels"})
    needs_update_log: ClassVar[bool] = False

    def parse_params(self, params: dict[str, Any] | None) -> MethodParams:
        return self.Params.model_validate(params or {})

    def check_applicable(self, scope: Scope, has_update_log: bool) -> None:
        if scope not in self.scopes:
            raise MethodNotApplicable(
                f"{self.name} works only with scope {' or '.join(sorted(self.scopes))}, not {scope}"
            )
        if self.needs_update_log and not has_update_log:
            raise MethodNotApplicable(
                f"{self.name} subtracts recorded training updates, and this model was trained without an update log"
            )

    def planned_steps(self, task: UnlearningTask, params: MethodParams) -> int | None:
        """Batches the run will take, for progress; None if unknown in advance."""
        return None

    @abc.abstractmethod
    def run(self, task: UnlearningTask, params: MethodParams) -> nn.Module:
        """Return the unlearned model (``task.model`` changed in place, or a new one)."""
