"""Method ``auto``: which methods to try, in which order, until one passes verification.

The order is by expected cost (fastest first, from the forgetting benchmark's speed-ups over
retraining), among the methods that can serve the scope, the model kind and its update log; every
method runs with its defaults (one set for every dataset); ``retrain`` is always last, and as the
exact method it always passes. Torch-free: the API publishes it.

Sample scope: when the forget set is so small that the membership test could not pass even for data
the model never saw (its bound's half-width alone exceeds the margin), no approximate method can be
verified, and the plan is ``retrain`` alone (``notes`` says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.engine.verification.membership import expected_half_width
from workers.engine.verification.policy import VerificationPolicy

AUTO = "auto"


@dataclass(frozen=True)
class Planned:
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}


@dataclass(frozen=True)
class LogFacts:
    """What the model's update log can offer (None: no log)."""

    mode: str  # dense | pruned
    first_epoch_gradients: bool


FIRST_EPOCH = Planned("gradient_ascent", {"gradients": "first_epoch"})
CURRENT = Planned("gradient_ascent")
RETRAIN = Planned("retrain")

# The published order, per case (README "Unlearning engine"; GET /v1/verification-policy).
DESCRIPTION = {
    "classifier, class scope": "unsir; gradient_ascent first_epoch (log with first-epoch gradients); "
    "amnesiac (dense log); retrain",
    "classifier, sample scope": "gradient_ascent first_epoch (log with first-epoch gradients); gradient_ascent; "
    "finetune; amnesiac (dense log); retrain. Only retrain when the forget set is too small for the "
    "membership test to verify anything",
    "language model": "gradient_ascent first_epoch (log with first-epoch gradients); gradient_ascent; retrain",
}


def plan(
    *,
    scope: str,
    kind: str,
    log: LogFacts | None,
    forget_rows: int,
    reference_rows: int,
    policy: VerificationPolicy,
) -> tuple[list[Planned], list[str]]:
    """The attempts in order, and notes on what was left out and why."""
    notes: list[str] = []
    first_epoch = [FIRST_EPOCH] if log is not None and log.first_epoch_gradients else []
    dense = [Planned("amnesiac")] if log is not None and log.mode == "dense" else []
    if kind == "language_model":
        return [*first_epoch, CURRENT, RETRAIN], notes
    if scope == "class_labels":
        return [Planned("unsir"), *first_epoch, *dense, RETRAIN], notes
    half_width = expected_half_width(
        min(forget_rows, policy.max_rows), min(reference_rows, policy.max_rows), policy.confidence
    )
    if half_width > policy.mia_margin:
        notes.append(
            f"{forget_rows} forget rows against {reference_rows} evaluation rows: the membership test's bound "
            f"would sit ~{half_width:.3f} above the measured excess, over the margin {policy.mia_margin}, so no "
            "approximate method can be verified; retrain (exact) only"
        )
        return [RETRAIN], notes
    return [*first_epoch, CURRENT, Planned("finetune"), *dense, RETRAIN], notes


def escalation(explicit: Planned, auto_plan: list[Planned]) -> list[Planned]:
    """``on_verification_failure: escalate``: the explicit method first, then auto's plan without it."""
    return [explicit, *(p for p in auto_plan if p != explicit)]
