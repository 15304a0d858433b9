"""Run a plan's methods in order from the source model, verifying each, until one passes.

The engine's half of an unlearn job's attempts (the worker adds the job's settings, its state
changes and the evidence it stores: workers/runner/attempts.py); the forgetting benchmark runs the
same loop, so its ``auto`` rows measure what the service does.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import nn

from workers.engine.device import synchronize
from workers.engine.methods import MethodNotApplicable, UnlearningTask, get_method
from workers.engine.runtime import TrainingDiverged
from workers.engine.verification import gate
from workers.engine.verification.plan import Planned
from workers.engine.verification.policy import VerificationPolicy

EXACT = "retrain"


class AttemptHooks(Protocol):
    def verifying(self) -> None:
        """The method returned; its model is about to be verified."""

    def escalating(self, attempt: dict[str, Any], next_method: str) -> None:
        """The attempt failed or refused; ``next_method`` runs next."""


class NoAttemptHooks:
    def verifying(self) -> None:
        pass

    def escalating(self, attempt: dict[str, Any], next_method: str) -> None:
        pass


@dataclass
class Outcome:
    """The kept attempt (``guarantee`` exact / verified / unverified), or the last one's failure
    (``guarantee`` None, ``model`` None)."""

    step: Planned
    model: nn.Module | None
    task: UnlearningTask
    verdict: dict[str, Any]
    guarantee: str | None
    attempts: list[dict[str, Any]] = field(default_factory=list)


def first_verified(
    steps: list[Planned],
    *,
    source: nn.Module,
    new_task: Callable[[nn.Module], UnlearningTask],
    data: gate.GateData,
    policy: VerificationPolicy,
    baseline: float | None,
    accept_last: bool = False,
    hooks: AttemptHooks | None = None,
) -> Outcome:
    """Each attempt starts from a copy of ``source``. A method that refuses or diverges hands over to
    the next (the last one's is raised); ``accept_last`` keeps the last model even if it fails."""
    hooks = hooks or NoAttemptHooks()
    attempts: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        method = get_method(step.method)
        task = new_task(copy.deepcopy(source))
        started = time.perf_counter()
        try:
            params = method.parse_params(step.params)
            method.check_applicable(task.scope, task.update_log is not None, task.kind)
            task.progress.total_steps = task.progress.step + (method.planned_steps(task, params) or 0)
            model = method.run(task, params).eval()
            task.progress.settle()  # every method settles its records; one that forgot still reports them
            synchronize(task.device)  # the wall time covers the device's queued work
        except (MethodNotApplicable, TrainingDiverged) as exc:
            # a refusal, or a loss that became NaN/inf (its model is garbage): the next method runs
            outcome = "refused" if isinstance(exc, MethodNotApplicable) else "diverged"
            attempts.append({**step.as_dict(), "outcome": outcome, "reason": str(exc)})
            if last:
                raise
            hooks.escalating(summary(attempts[-1]), steps[i + 1].method)
            continue
        wall = round(time.perf_counter() - started, 4)
        hooks.verifying()
        verdict = gate.verify(model, data, policy, source=baseline, recipe=task.recipe)
        exact = step.method == EXACT
        outcome = "exact" if exact else ("verified" if verdict["passed"] else "failed_verification")
        attempts.append(
            {
                **step.as_dict(),
                "outcome": outcome,
                "wall_time_s": wall,
                "verified_after_s": round(time.perf_counter() - started, 4),
                "tests": verdict["tests"],
            }
        )
        if verdict["passed"] or exact or (last and accept_last):
            guarantee = "exact" if exact else ("verified" if verdict["passed"] else "unverified")
            return Outcome(step, model, task, verdict, guarantee, attempts)
        if not last:
            hooks.escalating(summary(attempts[-1]), steps[i + 1].method)
            continue
        return Outcome(step, None, task, verdict, None, attempts)
    raise AssertionError("an empty plan")  # plans always hold at least one method


def summary(attempt: dict[str, Any]) -> dict[str, Any]:
    """An attempt without its full tests: the failed ones, briefly."""
    out = {k: v for k, v in attempt.items() if k != "tests"}
    if "tests" in attempt:
        out["failed_tests"] = [brief(t) for t in attempt["tests"] if t["passed"] is False]
    return out


def brief(test: dict[str, Any]) -> dict[str, Any]:
    return {k: test.get(k) for k in ("name", "statistic", "threshold", "comparison", "note") if test.get(k) is not None}
