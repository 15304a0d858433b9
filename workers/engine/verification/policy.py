"""The verification policy: each test's threshold, its default, and the loosest a request may ask for.

A request may tighten any threshold freely; it may loosen one only within the bound in ``LOOSEST``
and with a reason, which the service stores in the audit trail. The probe's own settings
(``relearn_steps``, bootstrap size) are the operator's, not a request's. Torch-free: the API
validates requests with it and publishes it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

OnFailure = Literal["fail", "escalate", "accept"]
ON_FAILURE_DEFAULT: OnFailure = "fail"  # for an explicit method; auto always escalates


class VerificationPolicy(BaseModel):
    """Thresholds of the gate's tests (the defaults are the service's; ``UNLEARND_VERIFICATION__*``)."""

    model_config = ConfigDict(extra="forbid")

    class_max_accuracy: float = Field(
        0.01, ge=0, le=1, description="Class scope: accuracy on evaluation rows of the forgotten classes, at most."
    )
    mia_margin: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="Sample scope: how much more distinguishable (ROC-AUC of a loss attack) the forget set may be "
        "than an equal-size never-seen set, judged by the upper confidence bound.",
    )
    confidence: float = Field(
        0.95, ge=0.5, lt=1, description="One-sided confidence level of the bootstrap bounds (higher is stricter)."
    )
    utility_max_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Classifiers: evaluation accuracy of the retained classes may fall at most this much "
        "below the source model's (0.01 = 1 point).",
    )
    lm_perplexity_max_ratio: float = Field(
        1.05, ge=1, le=10, description="Language models: retain perplexity at most the source's times this."
    )
    lm_loss_band: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Language models: forget-document mean loss within this relative band of the evaluation "
        "documents' (below it: still memorised; above it: pushed past unseen data).",
    )
    lm_exact_match_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Language models: greedy exact-match rate of forget documents at most the evaluation "
        "documents' plus this.",
    )
    relearn_margin: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Relearn probe: after the same fine-tuning steps, the forget set may come back at most this "
        "much more than a never-seen set (accuracy for classifiers, relative loss for language models).",
    )
    relearn_steps: int = Field(10, ge=1, le=1000, description="Relearn probe: full-batch fine-tuning steps.")
    relearn_rows: int = Field(256, ge=8, le=100_000, description="Relearn probe: rows (or blocks) per set, at most.")
    bootstrap_samples: int = Field(1000, ge=100, le=100_000, description="Bootstrap resamples of a bound.")
    max_rows: int = Field(5000, ge=100, le=1_000_000, description="Rows per side a test reads, at most (seeded).")


# Direction of each threshold a request may change: "max" thresholds are tightened by lowering them,
# "min" ones (confidence) by raising them.
TIGHTER_IS_LOWER = {
    "class_max_accuracy": True,
    "mia_margin": True,
    "confidence": False,
    "utility_max_drop": True,
    "lm_perplexity_max_ratio": True,
    "lm_loss_band": True,
    "lm_exact_match_margin": True,
    "relearn_margin": True,
}
# The loosest value a request may ask for, with a reason: past these, the evidence would not support
# a "verified" claim.
LOOSEST: dict[str, float] = {
    "class_max_accuracy": 0.05,
    "mia_margin": 0.15,
    "confidence": 0.8,
    "utility_max_drop": 0.05,
    "lm_perplexity_max_ratio": 1.25,
    "lm_loss_band": 0.3,
    "lm_exact_match_margin": 0.2,
    "relearn_margin": 0.3,
}


def _optional(name: str) -> tuple[Any, FieldInfo]:
    """A policy threshold as an optional field of a request: the same bounds, no default."""
    field = VerificationPolicy.model_fields[name]
    return field.annotation | None, FieldInfo.merge_field_infos(field, default=None)


_Thresholds = create_model(
    "_Thresholds", __config__=ConfigDict(extra="forbid"), **{name: _optional(name) for name in LOOSEST}
)


class VerificationChange(_Thresholds):
    """A request's changes to the default policy. Tightening needs nothing; loosening needs ``reason``."""

    reason: str | None = Field(
        None,
        min_length=3,
        max_length=500,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="Why a threshold is loosened (required then; stored in the audit trail). Not personal data.",
    )

    def changes(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump(exclude={"reason"}).items() if v is not None}


def loosened(defaults: VerificationPolicy, change: VerificationChange) -> dict[str, float]:
    """The thresholds ``change`` makes looser than ``defaults``."""
    out = {}
    for name, value in change.changes().items():
        default = getattr(defaults, name)
        if (value > default) if TIGHTER_IS_LOWER[name] else (value < default):
            out[name] = value
    return out


def check_change(defaults: VerificationPolicy, change: VerificationChange) -> list[str]:
    """What is wrong with ``change`` against ``defaults`` (empty: acceptable)."""
    problems = []
    looser = loosened(defaults, change)
    for name, value in looser.items():
        bound = LOOSEST[name]
        if (value > bound) if TIGHTER_IS_LOWER[name] else (value < bound):
            problems.append(f"{name} {value} is looser than the loosest allowed ({bound})")
    if looser and not change.reason:
        problems.append(f"loosening {', '.join(sorted(looser))} needs a reason (verification.reason)")
    return problems


def effective(defaults: VerificationPolicy, change: dict[str, Any] | None) -> VerificationPolicy:
    """The policy a job runs under: the defaults with the request's changes applied."""
    if not change:
        return defaults
    return defaults.model_copy(update=VerificationChange.model_validate(change).changes())


def published(defaults: VerificationPolicy) -> dict[str, Any]:
    """What ``GET /v1/verification-policy`` answers: each threshold, its default, the loosest allowed."""
    fields = VerificationPolicy.model_fields
    return {
        "thresholds": {
            name: {
                "default": getattr(defaults, name),
                "loosest": LOOSEST[name],
                "tighter_is": "lower" if TIGHTER_IS_LOWER[name] else "higher",
                "description": fields[name].description,
            }
            for name in LOOSEST
        },
        "probe": {name: getattr(defaults, name) for name in fields if name not in LOOSEST},
        "on_verification_failure": {
            "default_for_explicit_methods": ON_FAILURE_DEFAULT,
            "choices": {
                "fail": "no new version, earlier ones kept; the job FAILED with the failed tests",
                "escalate": "continue with method auto's plan (retrain last)",
                "accept": "make the version anyway, certified as unverified with the tests it failed",
            },
        },
    }
