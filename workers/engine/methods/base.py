"""The one interface every unlearning method implements.

A method receives an :class:`UnlearningTask` (the model, the forget set, the retain data, the
recipe, callbacks through ``progress``) and its validated params, and returns the unlearned model.
It reports per-batch records and honours cancellation through ``task.progress``.

Model kinds: a ``"classifier"`` (the default) or a ``"language_model"`` (``task.kind``; its
``task.objective`` is ``CAUSAL_LM``, its rows are packed blocks with ``x`` token IDs, ``y`` labels and
``ids`` the document IDs, see ``workers.engine.text.lm_tensors``). A method lists the kinds it serves
in ``kinds``; for a language model the only scope is ``"sample_ids"`` (document IDs).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workers.engine.methods.catalog import (
    LANGUAGE_MODEL_METHODS,
    Kind,
    MethodNotApplicable,
    MethodParams,
    MethodSpec,
    Scope,
)
from workers.engine.objectives import Objective, objective_for
from workers.engine.recipe import TrainingRecipe
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.update_log import LogCoverage, UpdateLogReader


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
    # unseen data that calibrates stopping: the held-out rows' calibration part, never the evaluation
    # part the service verifies with (workers/engine/holdout.py)
    holdout: LabelledTensors | None = None
    update_log: UpdateLogReader | None = None  # recorded training updates, for methods that need them
    extra_metrics: dict[str, Any] = field(default_factory=dict)  # what the method wants reported
    consumed_log_steps: list[int] = field(default_factory=list)  # logged steps the method subtracted
    kind: Kind = "classifier"  # the architecture's kind
    objective: Objective | None = None  # what training minimised; default: the kind's (objective_for)

    def __post_init__(self) -> None:
        if self.objective is None:
            self.objective = objective_for(self.kind)

    @property
    def is_language_model(self) -> bool:
        return self.kind == "language_model"

    def holdout_like_forget(self) -> LabelledTensors | None:
        """Held-out samples of the forget set's classes: "comparable unseen data". For a language
        model (no classes): the whole holdout (held-out text)."""
        if self.holdout is None:
            return None
        if self.is_language_model:
            return self.holdout if len(self.holdout) else None
        labels = torch.unique(self.forget.y).to(self.holdout.y.device)
        rows = torch.isin(self.holdout.y, labels).nonzero()[:, 0]
        return self.holdout.subset(rows) if len(rows) else None


class IncompleteUpdateLog(MethodNotApplicable):
    """The update log no longer accounts for every recorded step (or first-epoch gradient) of the
    forget set: subtracting or averaging what is left would leave the rest of its influence in the
    model while the job says it forgot. Counts only: no sample IDs (the message reaches logs)."""

    def __init__(self, coverage: LogCoverage, *, gradients: bool = False):
        self.gradients = gradients  # first-epoch gradients (gradient_ascent), else steps (amnesiac)
        self.samples_checked = coverage.samples
        self.samples_missing = coverage.samples_missing
        self.steps_missing = coverage.steps_missing
        self.steps_purged, self.samples_purged = coverage.steps_purged, coverage.samples_purged
        self.steps_unrecorded, self.samples_unrecorded = coverage.steps_unrecorded, coverage.samples_unrecorded
        # a first-epoch gradient also leaves with the step an earlier amnesiac erasure subtracted
        self.steps_subtracted = coverage.steps_subtracted if gradients else 0
        self.samples_subtracted = coverage.samples_subtracted if gradients else 0
        if gradients:
            self.samples_missing = coverage.samples_not_live
            self.steps_missing += self.steps_subtracted
        super().__init__(self._message())

    def _message(self) -> str:
        why = [
            f"{self.steps_purged} purged by an earlier erasure that did not subtract them "
            f"({self.samples_purged} samples)",
            f"{self.steps_unrecorded} never recorded ({self.samples_unrecorded} samples)",
        ]
        if self.gradients:
            why.append(
                f"{self.steps_subtracted} removed with steps an earlier amnesiac erasure subtracted "
                f"({self.samples_subtracted} samples)"
            )
            return (
                f"the update log's first-epoch gradients are incomplete for {self.samples_missing} of "
                f"{self.samples_checked} forget samples: {self.steps_missing} recorded steps are missing "
                f"({'; '.join(why)}); a mean without them would count those samples as zero. Use "
                "gradients=current, or retrain (exact)"
            )
        return (
            f"the update log is incomplete for {self.samples_missing} of {self.samples_checked} forget samples: "
            f"{self.steps_missing} of their training steps are missing ({'; '.join(why)}); subtracting the "
            "rest would leave their influence in those steps in the model. Use retrain (exact), or a method "
            "that does not need the log"
        )

    def counts(self) -> dict[str, int | str]:
        """The problem's extension fields."""
        out: dict[str, int | str] = {
            "missing": "first_epoch_gradients" if self.gradients else "steps",
            "samples_checked": self.samples_checked,
            "samples_missing": self.samples_missing,
            "steps_missing": self.steps_missing,
            "steps_purged": self.steps_purged,
            "samples_purged": self.samples_purged,
            "steps_never_recorded": self.steps_unrecorded,
            "samples_never_recorded": self.samples_unrecorded,
        }
        if self.gradients:
            out.update(steps_subtracted=self.steps_subtracted, samples_subtracted=self.samples_subtracted)
        return out


class UnlearningMethod(MethodSpec, abc.ABC):
    """A method's spec (workers.engine.methods.catalog) plus how it runs."""

    def planned_steps(self, task: UnlearningTask, params: MethodParams) -> int | None:
        """Batches the run will take, for progress; None if unknown in advance."""
        return None

    @abc.abstractmethod
    def run(self, task: UnlearningTask, params: MethodParams) -> nn.Module:
        """Return the unlearned model (``task.model`` changed in place, or a new one)."""


__all__ = [
    "LANGUAGE_MODEL_METHODS",
    "IncompleteUpdateLog",
    "Kind",
    "MethodNotApplicable",
    "MethodParams",
    "Scope",
    "UnlearningMethod",
    "UnlearningTask",
]
